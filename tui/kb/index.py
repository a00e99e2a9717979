"""The on-disk index of one knowledge base: chunks, their BM25 index, optional dense vectors.

Layout of ``<kb dir>/index/`` (replaced as a whole: written to ``index.new``, then swapped)::

    files.json      per file: mtime_ns, size, sha1, chunk count, kind, skip reason
    chunks.jsonl    one chunk a line, with its BM25 tokens (so a rebuild never re-reads files)
    bm25/           bm25s's saved index (vocab, params, CSC arrays)
    dense.npz       optional: chunk keys (sha1 of text) and L2-normalised embeddings
    complete        written last; an index dir without it is an unfinished write

Search is BM25 (bm25s); with an embedder and stored vectors it is BM25 and cosine similarity
fused by reciprocal rank fusion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from sys import intern
from typing import Any, Protocol

import numpy as np

from tui.i18n import _
from tui.kb.chunking import Chunk, tokenize

RRF_K = 60
INDEX_DIR = "index"


class Embedder(Protocol):
    """Text to vectors. ``name`` identifies the model: vectors from another one are not
    mixed in. See ``tui.kb.embed.LlamaEmbedder`` for llama.cpp GGUF embedding models."""

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass
class FileState:
    mtime_ns: int
    size: int
    sha1: str
    chunks: int
    kind: str
    skipped: str = ""
    """Why the file is not indexed (binary, too large...); empty when it is."""


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    """Fused score (RRF) when dense retrieval took part, else the BM25 score."""
    kb: str = ""


def chunk_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_private(folder: Path) -> None:
    """``folder`` and everything in it readable by the owner only (0700 folders, 0600
    files), as the rest of the data folder: bm25s writes its files with the umask's mode."""
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    for base, dirs, files in os.walk(folder):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(base, name), 0o700)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(base, name), 0o600)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists: best first, with fused scores."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _top(scores: Any, k: int) -> list[int]:
    n = len(scores)
    if n == 0 or k <= 0:
        return []
    k = min(k, n)
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [int(i) for i in idx if scores[i] > 0]


class ChunkIndex:
    """All chunks of one knowledge base, searchable. Build with ``build``, persist with
    ``save``, read back with ``load``."""

    def __init__(self, files: dict[str, FileState], chunks: list[Chunk],
                 tokens: list[list[str]], vectors: Any = None, embedder_name: str = "") -> None:
        self.files = files
        self.chunks = chunks
        self.tokens = tokens
        self.vectors = vectors
        """float32 array (n_chunks, dim), L2-normalised, or None."""
        self.embedder_name = embedder_name
        self._bm25: Any = None

    # --- building ------------------------------------------------------------------------

    def build_bm25(self) -> None:
        import bm25s  # type: ignore[import-untyped]

        logging.getLogger("bm25s").setLevel(logging.ERROR)
        if not self.chunks:
            self._bm25 = None
            return
        retriever = bm25s.BM25()
        retriever.index([t or [""] for t in self.tokens], show_progress=False)
        self._bm25 = retriever

    def embed_missing(self, embedder: Embedder, old: ChunkIndex | None,
                      should_stop: Any = None, batch: int = 32) -> int:
        """Vectors for every chunk, reusing ``old``'s for unchanged text. Returns how many
        were computed. ``should_stop()`` true leaves the index without vectors."""
        reuse: dict[str, Any] = {}
        if old is not None and old.vectors is not None and old.embedder_name == embedder.name:
            for c, v in zip(old.chunks, old.vectors, strict=False):
                reuse[chunk_key(c.text)] = v
        keys = [chunk_key(c.text) for c in self.chunks]
        todo = [i for i, key in enumerate(keys) if key not in reuse]
        fresh: dict[int, Any] = {}
        for a in range(0, len(todo), batch):
            if should_stop is not None and should_stop():
                return 0
            ids = todo[a:a + batch]
            vecs = embedder.embed([self.chunks[i].text for i in ids])
            for i, v in zip(ids, vecs, strict=True):
                fresh[i] = v
        if not self.chunks:
            return 0
        rows = [fresh[i] if i in fresh else reuse[key] for i, key in enumerate(keys)]
        mat = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        self.vectors = mat / np.maximum(norms, 1e-12)
        self.embedder_name = embedder.name
        return len(todo)

    # --- persistence ---------------------------------------------------------------------

    def save(self, kb_dir: Path) -> None:
        """Write to ``index.new`` and swap it in for ``index``."""
        new = kb_dir / "index.new"
        old = kb_dir / "index.old"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True, mode=0o700)
        with open(new / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c, toks in zip(self.chunks, self.tokens, strict=True):
                rec = {"p": c.path, "s": c.start, "e": c.end, "h": c.heading, "x": c.text,
                       "t": " ".join(toks)}
                if c.page:
                    rec["pg"] = 1
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        (new / "files.json").write_text(json.dumps(
            {p: asdict(s) for p, s in self.files.items()}, ensure_ascii=False))
        if self._bm25 is not None:
            self._bm25.save(str(new / "bm25"), show_progress=False)
        if self.vectors is not None:
            np.savez(new / "dense.npz", vectors=self.vectors,
                     name=np.asarray(self.embedder_name))
        (new / "complete").write_text("1")
        make_private(new)
        fsync_dir(new)
        cur = kb_dir / INDEX_DIR
        shutil.rmtree(old, ignore_errors=True)
        if cur.exists():
            os.replace(cur, old)
        os.replace(new, cur)
        fsync_dir(kb_dir)
        shutil.rmtree(old, ignore_errors=True)

    def save_files(self, kb_dir: Path) -> None:
        """Rewrite only the file table (the chunks did not change)."""
        cur = kb_dir / INDEX_DIR
        if not (cur / "complete").exists():
            self.save(kb_dir)
            return
        write_json_atomic(cur / "files.json", {p: asdict(s) for p, s in self.files.items()})

    @classmethod
    def load(cls, kb_dir: Path) -> ChunkIndex:
        """The saved index (an empty one when none was written yet). A write cut short
        between the two renames is finished here."""
        cur = kb_dir / INDEX_DIR
        if not (cur / "complete").exists():
            for cand in (kb_dir / "index.new", kb_dir / "index.old"):
                if (cand / "complete").exists():
                    shutil.rmtree(cur, ignore_errors=True)
                    os.replace(cand, cur)
                    break
        if not (cur / "complete").exists():
            return cls({}, [], [])
        files = {p: FileState(**s) for p, s in
                 json.loads((cur / "files.json").read_text(encoding="utf-8")).items()}
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        with open(cur / "chunks.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                chunks.append(Chunk(r["p"], r["s"], r["e"], r["x"], r["h"], bool(r.get("pg"))))
                tokens.append([intern(t) for t in r["t"].split()])
        vectors: Any = None
        name = ""
        if (cur / "dense.npz").exists():
            with np.load(cur / "dense.npz") as z:
                vectors, name = z["vectors"], str(z["name"])
        index = cls(files, chunks, tokens, vectors, name)
        if chunks:
            try:
                import bm25s

                logging.getLogger("bm25s").setLevel(logging.ERROR)
                index._bm25 = bm25s.BM25.load(str(cur / "bm25"), show_progress=False)
                if int(index._bm25.scores["num_docs"]) != len(chunks):
                    raise ValueError(_("stale BM25 index"))
            except (OSError, ValueError, KeyError):
                index.build_bm25()  # rebuilt from the stored tokens
        return index

    # --- search --------------------------------------------------------------------------

    def bm25_ranking(self, query: str, k: int) -> tuple[list[int], list[float]]:
        if self._bm25 is None:
            return [], []
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in dict.fromkeys(tokenize(query)) if t in vocab]
        if not ids:
            return [], []
        scores = self._bm25.get_scores_from_ids(ids)
        top = _top(scores, k)
        return top, [float(scores[i]) for i in top]

    def dense_ranking(self, query_vec: Sequence[float], k: int) -> list[int]:
        if self.vectors is None or not len(self.vectors):
            return []
        q = np.asarray(query_vec, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        sims = self.vectors @ q
        return _top(sims + 1.0, k)  # +1: cosine in [-1, 1] -> positive for _top

    def search(self, query: str, k: int = 5, embedder: Embedder | None = None,
               kb: str = "") -> list[Hit]:
        top, scores = self.bm25_ranking(query, max(k, 20) if embedder else k)
        if embedder is None or self.vectors is None or self.embedder_name != embedder.name:
            return [Hit(self.chunks[i], s, kb) for i, s in zip(top, scores, strict=True)][:k]
        dense = self.dense_ranking(embedder.embed([query])[0], max(k, 20))
        return [Hit(self.chunks[i], s, kb) for i, s in rrf([top, dense])[:k]]
