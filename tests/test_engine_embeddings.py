"""Embeddings from the chat model (mean pooling), locally and over ``POST /v1/embeddings``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.test_remote_engine import MODELS, _json, fake
from tui.engine.base import Embedder
from tui.engine.errors import EngineError
from tui.engine.local import LocalEngine
from tui.engine.remote import RemoteEngine

TRIPLES = [  # (text, a related text, an unrelated one)
    ("The cat sat on the mat.", "A kitten rested on the rug.",
     "Quarterly revenue rose by ten percent."),
    ("How do I bake bread at home?", "A simple recipe for homemade bread.",
     "The train leaves the station at noon."),
    ("Python is a programming language.", "I write code in Python every day.",
     "The mountains were covered in snow."),
]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def vectors(smollm_engine: LocalEngine) -> Iterator[list[list[float]]]:
    texts = [t for triple in TRIPLES for t in triple]
    yield smollm_engine.embed(texts)


def test_vectors_are_normalised_and_one_per_text(
    smollm_engine: LocalEngine, vectors: list[list[float]]
) -> None:
    assert isinstance(smollm_engine, Embedder)
    assert len(vectors) == 3 * len(TRIPLES)
    width = len(vectors[0])
    assert width == 576  # SmolLM2-135M's hidden size
    for v in vectors:
        assert len(v) == width
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5


def test_the_same_text_gives_the_same_vector(
    smollm_engine: LocalEngine, vectors: list[list[float]]
) -> None:
    # alone, or batched with others in a different place: the same vector
    again = smollm_engine.embed(["filler text first", TRIPLES[0][0]])[1]
    assert _cos(again, vectors[0]) > 0.9999
    assert max(abs(a - b) for a, b in zip(again, vectors[0], strict=True)) < 1e-3


def test_related_texts_are_closer_than_unrelated_ones(vectors: list[list[float]]) -> None:
    for i, triple in enumerate(TRIPLES):
        anchor, related, unrelated = vectors[3 * i: 3 * i + 3]
        assert _cos(anchor, related) > _cos(anchor, unrelated), triple


def test_empty_and_odd_input(smollm_engine: LocalEngine) -> None:
    assert smollm_engine.embed([]) == []
    odd = smollm_engine.embed(["", "lone \ud800 surrogate", "x" * 5000])
    assert len(odd) == 3 and all(len(v) == 576 for v in odd)


def test_remote_embed_posts_to_v1_embeddings() -> None:
    def answer(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        data = [{"index": i, "embedding": [3.0, 4.0 + i]} for i in range(len(body["input"]))]
        _json(handler, 200, {"data": list(reversed(data)), "model": body["model"]})

    routes = {"GET /v1/models": MODELS, "POST /v1/embeddings": answer}
    with fake(routes) as (url, seen):
        remote = RemoteEngine(url)
        vectors = remote.embed(["a", "b"])
    assert seen[-1]["input"] == ["a", "b"] and seen[-1]["model"] == "m1"
    assert vectors[0] == [0.6, 0.8]  # in input order, normalised
    assert abs(_cos(vectors[1], vectors[1]) - 1.0) < 1e-9


def test_remote_embed_errors_are_one_line() -> None:
    routes = {"GET /v1/models": MODELS,
              "POST /v1/embeddings": lambda h, b: _json(h, 404, {"error": "no embeddings"})}
    with fake(routes) as (url, _), pytest.raises(EngineError, match="404"):
        RemoteEngine(url).embed(["a"])
