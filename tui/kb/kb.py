"""Named knowledge bases: a set of folders and files, indexed on disk, searchable.

Layout under the data folder::

    kb/<name>/kb.json       name, paths, created/updated, last report line (atomic writes)
    kb/<name>/index/        the chunk index (see ``tui.kb.index``)

Per-chunk data never goes into the TinyDB store: it lives in the index folder beside
``kb.json``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.config import ensure_private_dir
from tui.display import printable
from tui.i18n import _
from tui.kb.chunking import Chunk
from tui.kb.extract import SkipFile
from tui.kb.index import ChunkIndex, Embedder, FileState, Hit, write_json_atomic
from tui.kb.ingest import (
    MAX_FILE_BYTES,
    FileResult,
    IngestReport,
    ProgressFn,
    ReadError,
    iter_results,
    walk,
)

KB_DIR = "kb"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KBError(Exception):
    """A knowledge base operation that cannot be done; the message says why in one line."""


@dataclass(frozen=True)
class KBInfo:
    name: str
    paths: tuple[str, ...]
    files: int
    chunks: int
    updated: str
    dense: str
    """Embedding model name when dense vectors are stored, else empty."""


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class KnowledgeBase:
    """One knowledge base. Not thread-safe: one reindex at a time (the app runs it in a
    worker); ``search`` may run while no reindex is writing."""

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        self.dir = directory
        self.meta = meta
        self._index: ChunkIndex | None = None

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def paths(self) -> list[str]:
        return list(self.meta.get("paths", []))

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self._index = ChunkIndex.load(self.dir)
        return self._index

    def _save_meta(self) -> None:
        self.meta["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.dir / "kb.json", self.meta)

    def info(self) -> KBInfo:
        idx = self.index
        indexed = sum(1 for f in idx.files.values() if not f.skipped)
        return KBInfo(self.name, tuple(self.paths), indexed, len(idx.chunks),
                      str(self.meta.get("updated", "")), idx.embedder_name)

    @property
    def follow_links(self) -> bool:
        """Follow symlinks that lead out of the folders given (off: they are skipped)."""
        return bool(self.meta.get("follow_links", False))

    def set_follow_links(self, follow: bool) -> None:
        if follow != self.follow_links:
            self.meta["follow_links"] = follow
            self._save_meta()

    def add_paths(self, paths: Iterable[str | Path]) -> list[str]:
        """Add folders or files (absolute paths are stored); returns the ones new to it."""
        added = []
        current = self.paths
        for p in paths:
            ap = str(Path(p).expanduser().absolute())
            try:
                ap.encode("utf-8")
            except UnicodeEncodeError:
                raise KBError(_("{printable}: the name is not valid UTF-8 (rename it to index "
                                "it)", printable=printable(ap))) from None
            if ap not in current:
                current.append(ap)
                added.append(ap)
        self.meta["paths"] = current
        self._save_meta()
        return added

    def remove_paths(self, paths: Iterable[str | Path]) -> list[str]:
        """Stop indexing these paths; their chunks go at the next ``reindex``."""
        gone = {str(Path(p).expanduser().absolute()) for p in paths}
        removed = [p for p in self.paths if p in gone]
        self.meta["paths"] = [p for p in self.paths if p not in gone]
        self._save_meta()
        return removed

    def reindex(
        self,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        embedder: Embedder | None = None,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> IngestReport:
        """Bring the index up to date with the files. Unchanged files are not read; cancel
        keeps what was done so far plus the old index of the files not reached."""
        t0 = time.perf_counter()
        report = IngestReport()
        old = self.index
        roots = self.paths
        missing_roots = [r for r in roots if not os.path.lexists(r)]
        for r in missing_roots:
            report.problems.append(_("{r}: not found; its files are kept from the last index", r=r))
        w = walk([Path(r) for r in roots if r not in missing_roots],
                 follow_links=self.follow_links)
        report.problems.extend(w.problems)
        report.files_total = len(w.files)

        old_by_path: dict[str, list[int]] = {}
        for i, c in enumerate(old.chunks):
            old_by_path.setdefault(c.path, []).append(i)

        def old_sha1(path: str, st: os.stat_result) -> str | bool | None:
            prev = old.files.get(path)
            if prev is None:
                return None
            if prev.mtime_ns == st.st_mtime_ns and prev.size == st.st_size:
                # a file skipped as too large is tried again under a raised limit
                return not (prev.skipped.startswith("too large") and st.st_size <= max_bytes)
            return prev.sha1 or None

        files: dict[str, FileState] = {}
        new_parts: dict[str, tuple[list[Chunk], list[list[str]]]] = {}
        for path, st, res in iter_results(w.files, old_sha1, max_bytes=max_bytes,
                                          progress=progress, cancel=cancel):
            key = str(path)
            prev = old.files.get(key)
            if res is None:  # unchanged
                report.files_unchanged += 1
                files[key] = prev if prev is not None else FileState(0, 0, "", 0, "")
                if files[key].skipped:
                    report.files_skipped += 1
                continue
            report.files_read += 1
            if isinstance(res, FileResult):
                if res.chunks is None:  # same bytes, new mtime
                    report.files_unchanged += 1
                    assert prev is not None
                    files[key] = FileState(st.st_mtime_ns, st.st_size, res.sha1,
                                           prev.chunks, prev.kind, prev.skipped)
                    continue
                if prev is None or prev.skipped:
                    report.files_new += 1
                else:
                    report.files_changed += 1
                files[key] = FileState(st.st_mtime_ns, st.st_size, res.sha1,
                                       len(res.chunks), res.kind)
                new_parts[key] = (res.chunks, res.tokens or [])
                report.chunks_new += len(res.chunks)
            elif isinstance(res, SkipFile):
                report.files_skipped += 1
                report.problems.append(f"{path}: {res}, skipped")
                files[key] = FileState(st.st_mtime_ns, st.st_size, "", 0, "", str(res))
            elif isinstance(res, FileNotFoundError):
                report.problems.append(_("{path}: vanished during ingest", path=path))
            else:  # ReadError or another OSError: keep what was indexed before
                report.files_skipped += 1
                reason = str(res) if isinstance(res, ReadError) else f"unreadable ({res})"
                kept = _(" (previous index kept)") if prev is not None and prev.chunks else ""
                report.problems.append(f"{path}: {reason}, skipped{kept}")
                if prev is not None:
                    files[key] = prev
        report.cancelled = bool(cancel is not None and cancel.is_set())

        # files not seen this run: keep those that may still exist, drop the deleted ones
        for key, prev in old.files.items():
            if key in files:
                continue
            keep = (report.cancelled and _under(key, roots)) or _under(key, missing_roots) \
                or _under(key, w.incomplete)
            if keep:
                files[key] = prev
            elif prev.chunks:
                report.files_deleted += 1

        indexed = {k for k, f in files.items() if f.chunks}
        same_chunks = not new_parts and indexed == {k for k, f in old.files.items() if f.chunks}
        if same_chunks and embedder is None and old.vectors is None:
            # nothing to re-chunk or drop: keep the BM25 index, record the new stats only
            old.files = files
            old.save_files(self.dir)
            return self._finish(report, old, t0)
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        for key in files:
            if key in new_parts:
                cs, ts = new_parts[key]
                chunks.extend(cs)
                tokens.extend(ts)
            else:
                for i in old_by_path.get(key, ()):
                    chunks.append(old.chunks[i])
                    tokens.append(old.tokens[i])
        index = ChunkIndex(files, chunks, tokens)
        index.build_bm25()
        if embedder is not None or old.vectors is not None:
            emb = embedder
            if emb is None:
                report.problems.append(_("dense vectors dropped: no embedding model given"))
            else:
                index.embed_missing(emb, old, should_stop=None)
        index.save(self.dir)
        return self._finish(report, index, t0)

    def _finish(self, report: IngestReport, index: ChunkIndex, t0: float) -> IngestReport:
        self._index = index
        report.chunks_total = len(index.chunks)
        report.seconds = time.perf_counter() - t0
        self.meta["last_report"] = report.summary()
        self._save_meta()
        return report

    def search(self, query: str, k: int = 5, embedder: Embedder | None = None) -> list[Hit]:
        return self.index.search(query, k, embedder, kb=self.name)


class KBLibrary:
    """All knowledge bases under ``<data_dir>/kb``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / KB_DIR

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "kb.json").is_file())

    def exists(self, name: str) -> bool:
        return (self.root / name / "kb.json").is_file()

    def open(self, name: str) -> KnowledgeBase:
        import json

        path = self.root / name / "kb.json"
        if not _NAME_OK.match(name) or not path.is_file():
            have = ", ".join(self.names()) or _("none yet")
            raise KBError(_("no knowledge base named {name!r} (have: {have})",
                            name=name, have=have))
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KBError(_("knowledge base {name!r} is damaged: {exc}",
                            name=name, exc=exc)) from None
        return KnowledgeBase(path.parent, meta)

    def create(self, name: str, paths: Sequence[str | Path] = ()) -> KnowledgeBase:
        if not _NAME_OK.match(name):
            raise KBError(_("bad knowledge base name {name!r}: use letters, digits, - _ .",
                            name=name))
        if self.exists(name):
            raise KBError(_("a knowledge base named {name!r} already exists", name=name))
        ensure_private_dir(self.root)  # kb/ itself too, not only the knowledge base in it
        directory = ensure_private_dir(self.root / name)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        kb = KnowledgeBase(directory, {"name": name, "paths": [], "created": now,
                                       "version": 1})
        kb.add_paths(paths)
        return kb

    def open_or_create(self, name: str) -> KnowledgeBase:
        return self.open(name) if self.exists(name) else self.create(name)

    def remove(self, name: str) -> None:
        if not self.exists(name):
            raise KBError(_("no knowledge base named {name!r}", name=name))
        target = self.root / name
        trash = self.root / f".{name}.removing"
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def list(self) -> list[KBInfo]:
        return [self.open(n).info() for n in self.names()]
