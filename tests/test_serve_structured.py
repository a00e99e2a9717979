"""What the model does with the fields ``lmdesk serve`` passes on, with the real default model:
JSON-schema-constrained output that parses and validates on 20 seeds, log-probabilities,
penalties and logit bias, ignore_eos, embeddings, and ``lmdesk ask --schema``.

These need the engine's structured-output, logprob, penalty and embedding support (the
worker builds the grammar from ``SamplingParams.json_schema``); the HTTP side of each field
is tested without a model in test_serve_fields.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.serve_helpers import request
from tui.engine.local import LocalEngine
from tui.serve import ApiServer, EnginePool

MODEL = "smollm2-135m"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "role": {"type": "string", "enum": ["captain", "cook", "navigator"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 16},
                   "minItems": 1, "maxItems": 3},
        "ship": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 20},
                           "crew": {"type": "integer"},
                           "flag": {"enum": ["black", "white"]}},
            "required": ["name", "crew", "flag"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "role", "skills", "ship"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a pirate as JSON with name, role, skills, ship."}]


@pytest.fixture(scope="module")
def server(smollm_engine: LocalEngine) -> Iterator[ApiServer]:
    pool = EnginePool()
    pool.register(MODEL, smollm_engine, default=True)
    with ApiServer(pool, "127.0.0.1", 0) as api:
        yield api


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=180)


def _schema_format(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "pirate", "strict": True,
                                                   "schema": schema}}


def test_a_nested_schema_holds_on_twenty_seeds(client: openai.OpenAI) -> None:
    failures = []
    for seed in range(20):
        reply = client.chat.completions.create(
            model=MODEL, messages=ASK, seed=seed, temperature=0.9, max_tokens=300,
            response_format=_schema_format(PERSON))
        text = reply.choices[0].message.content or ""
        try:
            jsonschema.validate(json.loads(text), PERSON)
        except (ValueError, jsonschema.ValidationError) as exc:
            failures.append((seed, reply.choices[0].finish_reason, text, str(exc)[:80]))
    assert not failures, failures


def test_a_streamed_schema_reply_parses_too(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, seed=3, temperature=0.9, max_tokens=300, stream=True,
        response_format=_schema_format(PERSON))
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    jsonschema.validate(json.loads(text), PERSON)


def test_json_object_mode_gives_an_object(client: openai.OpenAI) -> None:
    for seed in range(3):
        reply = client.chat.completions.create(
            model=MODEL, messages=ASK, seed=seed, temperature=0.2, max_tokens=600,
            response_format={"type": "json_object"})
        # a reply cut by max_tokens cannot be whole JSON: the grammar must have closed it
        assert reply.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_unsupported_schema_keywords_are_a_400_naming_them(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5,
                                       response_format=_schema_format(schema))
    body: Any = info.value.body
    assert body["param"] == "response_format"
    assert "minimum" in body["message"] and "uniqueItems" in body["message"]


def test_the_responses_api_takes_the_same_schema(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model=MODEL, input="Describe a pirate as JSON.", max_output_tokens=300,
        text={"format": {"type": "json_schema", "name": "pirate", "schema": PERSON,
                         "strict": True}})
    jsonschema.validate(json.loads(reply.output_text), PERSON)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_are_the_models_own(client: openai.OpenAI, stream: bool) -> None:
    reply: Any = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=3, extra_body={"top_k": 1},
        stream=stream)  # type: ignore[call-overload]
    if stream:
        chunks = list(reply)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        content = [t for c in chunks for ch in c.choices if ch.logprobs
                   for t in ch.logprobs.content or []]
    else:
        text = reply.choices[0].message.content
        content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == text
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        alternatives = [a.logprob for a in t.top_logprobs]
        assert alternatives == sorted(alternatives, reverse=True)
        assert t.top_logprobs[0].token == t.token  # greedy: the pick is the likeliest
        assert math.isclose(t.top_logprobs[0].logprob, t.logprob, abs_tol=1e-3)
    completion = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=5,
                                           temperature=0, logprobs=2, extra_body={"top_k": 1})
    lp = completion.choices[0].logprobs
    assert lp is not None and "".join(lp.tokens or []) == completion.choices[0].text
    assert all(len(alts) == 2 for alts in lp.top_logprobs or [])


def _token_id(smollm: Path, text: str) -> int:
    from llama_cpp import Llama

    vocab = Llama(str(smollm), vocab_only=True, verbose=False)
    ids = vocab.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ids) == 1, ids
    return int(ids[0])


def test_logit_bias_bans_a_token_and_penalties_change_the_reply(
        client: openai.OpenAI, smollm: Path) -> None:
    def greedy(**kwargs: Any) -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Write a short poem."}],
            max_tokens=40, temperature=0, logprobs=True, extra_body={"top_k": 1}, **kwargs)

    plain = greedy()
    first = plain.choices[0].logprobs.content[0].token
    banned = greedy(logit_bias={str(_token_id(smollm, first)): -100})
    assert banned.choices[0].logprobs.content[0].token != first
    penalised = greedy(frequency_penalty=2.0, presence_penalty=1.5)
    assert penalised.choices[0].message.content != plain.choices[0].message.content


def test_ignore_eos_runs_to_max_tokens(client: openai.OpenAI) -> None:
    def reply(**extra: Any) -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Reply with the word yes."}],
            max_tokens=60, temperature=0, extra_body={"top_k": 1, **extra})

    plain = reply()
    assert plain.choices[0].finish_reason == "stop" and plain.usage.completion_tokens < 60
    forced = reply(ignore_eos=True)
    assert forced.usage is not None and forced.usage.completion_tokens == 60
    assert forced.choices[0].finish_reason == "length"


# --- embeddings ------------------------------------------------------------------------------


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


TRIPLES = [
    ("The cat sat on the mat.", "A cat is sitting on the mat.",
     "Interest rates rose in March."),
    ("How do I bake bread at home?", "A recipe for baking bread at home.",
     "The train to Berlin leaves at noon."),
    ("Python is a programming language.", "I write programs in the Python language.",
     "The mountain was covered in snow."),
]


def test_embeddings_same_text_same_vector_and_related_closer(client: openai.OpenAI,
                                                             server: ApiServer) -> None:
    texts = [t for triple in TRIPLES for t in triple]
    first = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert first.model == MODEL  # an unknown name: the server's own model, named
    again = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    vectors = [d.embedding for d in first.data]
    assert [d.index for d in first.data] == list(range(len(texts)))
    assert _cos(vectors[0], again.data[0].embedding) > 0.9999  # base64 and float agree too
    for i in range(len(TRIPLES)):
        anchor, related, unrelated = vectors[3 * i:3 * i + 3]
        assert _cos(anchor, related) > _cos(anchor, unrelated), TRIPLES[i]
    assert first.usage.prompt_tokens > len(texts)
    size = len(vectors[0])
    status, _, body = request(server.port, "POST", "/v1/embeddings",
                              {"input": "x", "dimensions": size // 2})
    assert status == 400 and body["error"]["param"] == "dimensions"
    assert request(server.port, "POST", "/v1/embeddings",
                   {"input": "x", "dimensions": size})[0] == 200


def test_embeddings_of_token_arrays_match_the_text(client: openai.OpenAI, smollm: Path) -> None:
    from llama_cpp import Llama

    vocab = Llama(str(smollm), vocab_only=True, verbose=False)
    text = "Knowledge bases find passages by meaning."
    ids = vocab.tokenize(text.encode(), add_bos=False, special=False)
    by_text = client.embeddings.create(model=MODEL, input=text).data[0].embedding
    by_ids = client.embeddings.create(model=MODEL, input=[ids]).data[0].embedding
    assert _cos(by_text, by_ids) > 0.9999


# --- lmdesk ask --schema ---------------------------------------------------------------------


def test_ask_schema_output_parses_and_validates(tmp_path: Path) -> None:
    schema_file = tmp_path / "pirate.json"
    schema_file.write_text(json.dumps(PERSON))
    for extra in (["--schema", str(schema_file)], ["--json-output"]):
        result = subprocess.run(
            [sys.executable, "-m", "tui.cli", "ask", *extra, "--max-tokens", "300",
             "--seed", "4", "Describe a pirate as JSON."],
            capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        value = json.loads(result.stdout)
        if extra[0] == "--schema":
            jsonschema.validate(value, PERSON)
        else:
            assert isinstance(value, dict)
