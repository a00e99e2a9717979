"""Dense retrieval fused with BM25: a fake embedder for the logic, the real worker once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from tui.kb import KBLibrary, KnowledgeBase
from tui.kb.index import ChunkIndex


class SynonymEmbedder:
    """Bag of concepts: words hashed into 64 dimensions, with a few synonyms folded."""

    SYN: ClassVar[dict[str, str]] = {
        "automobile": "car", "vehicle": "car", "cars": "car", "feline": "cat"}

    def __init__(self) -> None:
        self.calls = 0

    @property
    def name(self) -> str:
        return "fake-64"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += len(texts)
        out = []
        for t in texts:
            v = [0.0] * 64
            for w in t.lower().replace(".", " ").split():
                w = self.SYN.get(w, w)
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
            out.append(v)
        return out


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "garage.md").write_text("# Garage\n\nThe car is parked in the garage.\n")
    (docs / "pets.md").write_text("# Pets\n\nThe cat sleeps on the sofa.\n")
    (docs / "misc.md").write_text("# Misc\n\nAn automobile museum opens soon.\n")
    return KBLibrary(tmp_path / "data").create("d", [docs])


def test_dense_fusion_and_reuse(kb: KnowledgeBase) -> None:
    emb = SynonymEmbedder()
    kb.reindex(embedder=emb)
    assert emb.calls == 3 and kb.info().dense == "fake-64"
    assert kb.search("vehicle") == []  # BM25 alone knows no synonyms
    hits = kb.search("vehicle", 3, embedder=emb)
    assert {h.chunk.path.rsplit("/", 1)[1] for h in hits[:2]} == {"garage.md", "misc.md"}
    # vectors survive a reload and are reused for unchanged chunks
    assert ChunkIndex.load(kb.dir).vectors is not None
    docs = Path(kb.paths[0])
    (docs / "new.md").write_text("# New\n\nA feline naps.\n")
    emb.calls = 0
    kb.reindex(embedder=emb)
    assert emb.calls == 1
    assert kb.search("cat", 2, embedder=emb)[0].chunk.path.endswith(("pets.md", "new.md"))
    # another model's vectors are not mixed in: without the embedder, BM25 only
    r = kb.reindex()
    assert any("dense vectors dropped" in p for p in r.problems)
    assert ChunkIndex.load(kb.dir).vectors is None


@pytest.mark.model
def test_llama_embedder_worker(kb: KnowledgeBase, smollm: Path) -> None:
    from tui.kb.embed import LlamaEmbedder

    with LlamaEmbedder(smollm, n_ctx=128) as emb:
        vecs = emb.embed(["hello", "world"])
        assert len(vecs) == 2 and len(vecs[0]) > 16 and vecs[0] != vecs[1]
        kb.reindex(embedder=emb)
        assert kb.info().dense == smollm.name
        assert kb.search("cat sofa", 2, embedder=emb)
