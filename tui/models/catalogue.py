"""The curated catalogue of well-known GGUF models, shipped as JSON so it works offline.

Each entry names a public Hub repository, a file per quantization with its approximate size,
and the architecture numbers the fit estimate needs, so "will it fit here?" is answered
before anything is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from tui.models.fit import FitEstimate, ModelShape, Resources, estimate_fit

# share of a file's weights the CPU backend repacks, by quantization (see fit.py)
_REPACK_SHARE = {"Q4_0": 0.85, "Q4_K_M": 0.6, "Q4_K_S": 0.8, "IQ4_NL": 0.85}


@dataclass(frozen=True)
class CatalogueFile:
    quantization: str
    file: str
    size: int


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    name: str
    repo_id: str
    architecture: str
    params: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    embedding_length: int
    feed_forward_length: int
    vocab_size: int
    context_length: int
    files: tuple[CatalogueFile, ...]
    merges: int = 0
    sliding_window: int = 0
    license: str = ""
    experts: int = 0

    def file(self, quantization: str | None = None) -> CatalogueFile:
        """The file for ``quantization`` (case-insensitive); default Q4_K_M or the first."""
        if quantization:
            for f in self.files:
                if f.quantization.lower() == quantization.lower():
                    return f
            known = ", ".join(f.quantization for f in self.files)
            raise KeyError(f"{self.id} has no {quantization} file (has {known})")
        return next((f for f in self.files if f.quantization == "Q4_K_M"), self.files[0])

    def shape(self, quantization: str | None = None) -> ModelShape:
        f = self.file(quantization)
        swa_layers = 0
        if self.sliding_window and self.architecture == "gemma2":
            swa_layers = self.layers // 2
        bytes_per_param = f.size / self.params if self.params else 0.0
        embd = int(self.vocab_size * self.embedding_length * bytes_per_param)
        layer = max(0, f.size - 2 * embd) // self.layers if self.layers else 0
        repack = int(layer * self.layers * _REPACK_SHARE.get(f.quantization.upper(), 0.0))
        return ModelShape(
            name=self.name,
            architecture=self.architecture,
            n_layers=self.layers,
            n_heads=self.heads,
            n_kv_heads=self.kv_heads,
            key_length=self.head_dim,
            value_length=self.head_dim,
            embedding_length=self.embedding_length,
            feed_forward_length=self.feed_forward_length * max(1, min(self.experts, 2)),
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            n_params=self.params,
            weights_bytes=f.size,
            repack_bytes=repack,
            n_merges=self.merges,
            sliding_window=self.sliding_window,
            swa_layers=swa_layers,
            layer_bytes=layer,
        )

    def fit(
        self,
        quantization: str | None = None,
        *,
        n_ctx: int | None = None,
        resources: Resources | None = None,
    ) -> FitEstimate:
        return estimate_fit(self.shape(quantization), n_ctx=n_ctx, resources=resources)


def _entry(data: dict[str, Any]) -> CatalogueEntry:
    files = tuple(CatalogueFile(**f) for f in data["files"])
    return CatalogueEntry(**{**data, "files": files})


@lru_cache(maxsize=1)
def load_catalogue() -> tuple[CatalogueEntry, ...]:
    """The shipped catalogue (read once)."""
    text = resources.files("tui.models").joinpath("catalogue.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return tuple(_entry(m) for m in data["models"])


def find_entry(query: str) -> CatalogueEntry | None:
    """By id, repo id or a unique prefix of either (case-insensitive)."""
    q = query.lower()
    entries = load_catalogue()
    for e in entries:
        if q in (e.id.lower(), e.repo_id.lower()):
            return e
    hits = [e for e in entries if e.id.lower().startswith(q) or e.repo_id.lower().startswith(q)]
    return hits[0] if len(hits) == 1 else None
