"""``POST /v1/embeddings``: OpenAI's request and answer shapes around ``Embedder.embed``.

``input`` is a string, a list of strings, a token array or a list of token arrays (ids of the
served model's vocabulary, as llama-server reads them). ``encoding_format`` is ``float`` or
``base64`` (little-endian float32, what the official client asks for by default and decodes).
``dimensions`` is refused unless it is the model's own size: vectors are never truncated
behind the client's back. Vectors are L2-normalised, so a dot product is the cosine.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from tui.i18n import _
from tui.serve.schema import Body, bad, ignored_names

MAX_INPUTS = 2048
"""Texts per request (OpenAI's own limit)."""


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str | None
    texts: tuple[str, ...] | None
    """The inputs, when given as text."""
    token_arrays: tuple[tuple[int, ...], ...] | None
    """The inputs, when given as token ids (decoded with the model's vocabulary)."""
    base64: bool
    dimensions: int | None
    ignored: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.texts or self.token_arrays or ())


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


def parse(obj: dict[str, Any]) -> EmbeddingRequest:
    body = Body(obj)
    model = body.string("model")
    value = body.get("input")
    texts: tuple[str, ...] | None = None
    arrays: tuple[tuple[int, ...], ...] | None = None
    if isinstance(value, str):
        texts = (value,)
    elif _is_ids(value):
        arrays = (tuple(value),)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        texts = tuple(value)
    elif isinstance(value, list) and value and all(_is_ids(v) for v in value):
        arrays = tuple(tuple(v) for v in value)
    else:
        raise bad(_("input must be a string, a list of strings, a token array or a list of "
                    "token arrays (none empty)"), "input")
    count = len(texts or arrays or ())
    if count > MAX_INPUTS:
        raise bad(_("input holds {count} items; at most {MAX_INPUTS} per request", count=count,
                    MAX_INPUTS=MAX_INPUTS), "input")
    if texts is not None and not all(texts):
        raise bad(_("input holds an empty string"), "input")
    fmt = body.choice("encoding_format", ("float", "base64")) or "float"
    dimensions = body.integer("dimensions", low=1)
    return EmbeddingRequest(model, texts, arrays, fmt == "base64", dimensions,
                            ignored_names(body))


def check_dimensions(req: EmbeddingRequest, size: int) -> None:
    if req.dimensions is not None and req.dimensions != size:
        raise bad(_("dimensions={dimensions} is not offered: this model's vectors have {size} "
                    "dimensions and lmdesk does not shorten them (leave dimensions out)",
                    dimensions=req.dimensions, size=size), "dimensions", "unsupported")


def encode(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def answer(req: EmbeddingRequest, model: str, vectors: list[list[float]], prompt_tokens: int
           ) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v, req.base64)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
