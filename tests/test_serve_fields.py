"""What real clients send, through the official ``openai`` client, against a recording engine:
each field reaches the engine's SamplingParams (or the answer) as it should; unknown fields
are accepted, named in ``x-lmdesk-ignored`` and logged once; a known field with a bad value is
a 400 in OpenAI's shape with ``param``. What the model does with them is in
test_serve_structured.py (the real model)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.serve_helpers import RecordingEngine, chat_body, request
from tui.engine.protocol import Done, SamplingParams, TokenLogprob
from tui.serve import ApiServer, EnginePool, ServerLimits


class LogprobEngine(RecordingEngine):
    """Says which tokens it picked with made-up log-probabilities, as the worker reports them."""

    def generate(self, messages, sampling, *, raw_prompt=None, **kwargs):  # type: ignore[no-untyped-def]
        for event in super().generate(messages, sampling, raw_prompt=raw_prompt, **kwargs):
            if isinstance(event, Done) and sampling.top_logprobs is not None:
                pieces = ["Hello", " there", ",", " friend", "."]
                event = Done(event.request_id, event.text, event.stats, event.error,
                             logprobs=tuple(TokenLogprob(p, -0.5 * i, tuple(
                                 (f"alt{j}", -1.0 - j) for j in range(sampling.top_logprobs)))
                                 for i, p in enumerate(pieces)))
            yield event


@pytest.fixture
def engine() -> RecordingEngine:
    engine = LogprobEngine("Hello there, friend.", reasoning="Let me think. ")
    engine.load()
    return engine


@pytest.fixture
def logged() -> list[str]:
    return []


@pytest.fixture
def server(engine: RecordingEngine, logged: list[str]) -> Iterator[ApiServer]:
    pool = EnginePool()
    pool.register("fast", engine)
    api = ApiServer(pool, "127.0.0.1", 0, limits=ServerLimits(max_tokens_limit=64),
                    log=logged.append).start()
    yield api
    api.stop()


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=30)


MESSAGES: Any = [{"role": "user", "content": "hi"}]


def _stream_text(stream: Any) -> tuple[dict[int, str], dict[int, str], Any]:
    text: dict[int, str] = {}
    reasoning: dict[int, str] = {}
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            extra = choice.delta.model_extra or {}
            reasoning[choice.index] = reasoning.get(choice.index, "") + (
                extra.get("reasoning_content") or "")
    return text, reasoning, usage


@pytest.mark.parametrize("stream", [False, True])
def test_sampling_fields_reach_the_engine(client: openai.OpenAI, engine: RecordingEngine,
                                          stream: bool) -> None:
    reply = client.chat.completions.create(
        model="fast", messages=MESSAGES, stream=stream,  # type: ignore[call-overload]
        temperature=0.3, top_p=0.8, presence_penalty=0.5, frequency_penalty=-0.25,
        logit_bias={"42": -100, "7": 2.5}, seed=11, stop=["\n\n", "END"],
        max_completion_tokens=9,
        extra_body={"top_k": 5, "min_p": 0.1, "repeat_penalty": 1.3, "ignore_eos": True},
    )
    if stream:
        list(reply)
    s = engine.samplings[-1]
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty) == (
        0.3, 0.8, 5, 0.1, 1.3)
    assert (s.presence_penalty, s.frequency_penalty) == (0.5, -0.25)
    assert s.logit_bias == ((7, 2.5), (42, -100.0))
    assert s.seed == 11 and s.stop == ("\n\n", "END") and s.max_tokens == 9 and s.ignore_eos


def test_n_replies_come_one_after_another_each_with_its_own_seed(
        client: openai.OpenAI, engine: RecordingEngine) -> None:
    reply = client.chat.completions.create(model="fast", messages=MESSAGES, n=3, seed=100)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content == "Hello there, friend." for c in reply.choices)
    assert [s.seed for s in engine.samplings] == [100, 101, 102]
    assert reply.usage is not None
    assert reply.usage.completion_tokens == sum(d.stats.generated_tokens for d in engine.dones)
    stream = client.chat.completions.create(model="fast", messages=MESSAGES, n=2, stream=True,
                                            stream_options={"include_usage": True})
    text, _, usage = _stream_text(stream)
    assert text == {0: "Hello there, friend.", 1: "Hello there, friend."}
    assert usage is not None and usage.completion_tokens == sum(
        d.stats.generated_tokens for d in engine.dones[-2:])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="fast", messages=MESSAGES, n=9)
    assert info.value.body["param"] == "n"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_is_returned_apart_from_the_content(client: openai.OpenAI,
                                                      stream: bool) -> None:
    reply = client.chat.completions.create(model="fast", messages=MESSAGES,
                                           stream=stream)  # type: ignore[call-overload]
    if stream:
        text, reasoning, _ = _stream_text(reply)
        assert text[0] == "Hello there, friend." and reasoning[0] == "Let me think. "
    else:
        message = reply.choices[0].message
        assert message.content == "Hello there, friend."
        assert (message.model_extra or {})["reasoning_content"] == "Let me think. "
        # 'Let', ' me', ' think.', ' '
        assert reply.usage.completion_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize(("extra", "budget"), [
    ({"reasoning_effort": "none"}, 0),
    ({"reasoning_effort": "low"}, 512),
    ({"reasoning_effort": "high"}, -1),
    ({"reasoning_budget": 40}, 40),
    ({"chat_template_kwargs": {"enable_thinking": False}}, 0),
    ({}, -1),
])
def test_reasoning_effort_and_budget_map_to_the_budget(
        client: openai.OpenAI, engine: RecordingEngine, extra: dict[str, Any],
        budget: int) -> None:
    reply = client.chat.completions.create(model="fast", messages=MESSAGES, extra_body=extra)
    assert engine.samplings[-1].reasoning_budget == budget
    thought = (reply.choices[0].message.model_extra or {}).get("reasoning_content", "")
    assert (thought == "") == (budget == 0)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_in_openai_shape(client: openai.OpenAI, engine: RecordingEngine,
                                  stream: bool) -> None:
    reply = client.chat.completions.create(model="fast", messages=MESSAGES, logprobs=True,
                                           top_logprobs=2,
                                           stream=stream)  # type: ignore[call-overload]
    assert engine.samplings[-1].top_logprobs == 2
    if stream:
        content = [t for chunk in reply for c in chunk.choices if c.logprobs
                   for t in c.logprobs.content or []]
    else:
        content = reply.choices[0].logprobs.content
    assert [t.token for t in content] == ["Hello", " there", ",", " friend", "."]
    assert content[1].logprob == -0.5 and content[1].bytes == list(b" there")
    assert [a.token for a in content[0].top_logprobs] == ["alt0", "alt1"]
    completion = client.completions.create(model="fast", prompt="Say", logprobs=1, echo=True)
    choice = completion.choices[0]
    assert choice.text == "Say" + "Hello there, friend."
    assert choice.logprobs is not None and choice.logprobs.tokens[0] == "Hello"
    assert choice.logprobs.text_offset[:2] == [3, 8]
    assert choice.logprobs.top_logprobs[0] == {"alt0": -1.0}
    plain = client.chat.completions.create(model="fast", messages=MESSAGES)
    assert plain.choices[0].logprobs is None and engine.samplings[-1].top_logprobs is None


@pytest.mark.parametrize(("fmt", "expected"), [
    ({"type": "json_object"}, {}),
    ({"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
     {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
    ({"type": "text"}, None),
])
def test_response_format_becomes_the_engine_json_schema(
        client: openai.OpenAI, engine: RecordingEngine, fmt: dict[str, Any],
        expected: Any) -> None:
    client.chat.completions.create(model="fast", messages=MESSAGES,
                                   response_format=fmt)  # type: ignore[arg-type]
    given = engine.samplings[-1].json_schema
    assert (json.loads(given) if given is not None else None) == expected


def test_unknown_fields_are_ignored_named_in_a_header_and_logged_once(
        client: openai.OpenAI, server: ApiServer, logged: list[str]) -> None:
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "hi", "name": "bob"}],
            store=True, metadata={"k": "v"}, user="me", service_tier="auto",
            parallel_tool_calls=False, stream_options=None,
            extra_body={"frobnicate": 1, "prediction": {"type": "content", "content": "x"}},
        )
        assert raw.http_response.status_code == 200
        named = set(raw.headers["x-lmdesk-ignored"].split(", "))
        assert named == {"store", "metadata", "user", "service_tier", "frobnicate",
                         "prediction", "messages[].name"}
        assert raw.parse().choices[0].message.content == "Hello there, friend."
    notes = [line for line in logged if "ignores" in line]
    assert len(notes) == 1 and "frobnicate" in notes[0]
    plain = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
    assert "x-lmdesk-ignored" not in plain.headers


BAD_VALUES = [
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": "lots"}, "frequency_penalty"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"n": 0}, "n"),
    ({"seed": "x"}, "seed"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"reasoning_effort": "max"}, "reasoning_effort"),
    ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),  # no tool support
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"ignore_eos": 1}, "ignore_eos"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_VALUES)
def test_a_known_field_with_a_bad_value_is_a_400_naming_it(
        server: ApiServer, fields: dict[str, Any], param: str) -> None:
    status, _, body = request(server.port, "POST", "/v1/chat/completions",
                              {**chat_body(model="fast"), **fields})
    assert status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param


def test_the_official_client_sees_a_bad_value_as_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="fast", messages=MESSAGES, temperature=9)
    assert info.value.body["param"] == "temperature"  # type: ignore[index]


def test_completions_take_a_list_of_prompts_and_n(client: openai.OpenAI,
                                                  engine: RecordingEngine) -> None:
    reply = client.completions.create(model="fast", prompt=["A", "B"], n=2, seed=5)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert [s.seed for s in engine.samplings] == [5, 6, 7, 8]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="fast", prompt="A", best_of=3)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="fast", prompt=[1, 2, 3])


def test_the_sampling_defaults_when_nothing_is_sent(client: openai.OpenAI,
                                                    engine: RecordingEngine) -> None:
    client.chat.completions.create(model="fast", messages=MESSAGES)
    base = SamplingParams()
    s = engine.samplings[-1]
    assert (s.presence_penalty, s.frequency_penalty, s.logit_bias, s.top_logprobs,
            s.json_schema, s.ignore_eos, s.reasoning_budget) == (
        base.presence_penalty, base.frequency_penalty, (), None, None, False, -1)


# --- embeddings, on a scripted embedder ----------------------------------------------------


class Embedding(RecordingEngine):
    """Embeds by letter counts (normalised), and reports the real model's file, so token
    arrays are read with its vocabulary."""

    def __init__(self, path: str) -> None:
        super().__init__("x", name="emb")
        self.path = path
        self.embedded: list[list[str]] = []

    @property
    def info(self) -> Any:
        info = super().info
        return dataclasses.replace(info, path=self.path) if info is not None else None

    def embed(self, texts: Any) -> list[list[float]]:
        self.embedded.append(list(texts))
        out = []
        for text in texts:
            counts = [float(text.lower().count(c)) for c in "abcdefghijklmnop"]
            norm = math.sqrt(sum(v * v for v in counts)) or 1.0
            out.append([v / norm for v in counts])
        return out


@pytest.fixture
def embedder(smollm: Any) -> Iterator[tuple[ApiServer, Embedding]]:
    engine = Embedding(str(smollm))
    engine.load()
    pool = EnginePool()
    pool.register("chat", RecordingEngine("hi"), default=True)
    pool.register("emb", engine)
    with ApiServer(pool, "127.0.0.1", 0) as api:
        yield api, engine


def test_embeddings_float_base64_lists_and_token_arrays(
        embedder: tuple[ApiServer, Embedding]) -> None:
    api, engine = embedder
    client = openai.OpenAI(base_url=api.url, api_key="x", max_retries=0)
    by_default = client.embeddings.create(model="emb", input=["abc", "ponder"])  # base64
    as_float = client.embeddings.create(model="emb", input=["abc", "ponder"],
                                        encoding_format="float")
    assert [d.index for d in by_default.data] == [0, 1]
    for a, b in zip(by_default.data, as_float.data, strict=True):
        assert len(a.embedding) == 16
        assert all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a.embedding, b.embedding,
                                                                      strict=True))
    assert by_default.model == "emb" and by_default.usage.prompt_tokens > 0
    from llama_cpp import Llama

    vocab = Llama(engine.path, vocab_only=True, verbose=False)
    ids = vocab.tokenize(b"Hello, world: caf\xc3\xa9!", add_bos=False, special=False)
    client.embeddings.create(model="emb", input=[ids, ids[:2]])
    assert engine.embedded[-1] == ["Hello, world: café!", "Hello,"]
    status, _, body = request(api.port, "POST", "/v1/embeddings",
                              {"model": "emb", "input": [[10 ** 9]]})
    assert status == 400 and "vocabulary" in body["error"]["message"]


def test_embeddings_refusals_and_the_model_used(embedder: tuple[ApiServer, Embedding]) -> None:
    api, _ = embedder
    for body, param in (({"input": []}, "input"), ({"input": [1, "a"]}, "input"),
                        ({"input": ""}, "input"), ({"input": "a", "encoding_format": "hex"},
                                                   "encoding_format"),
                        ({"model": "emb", "input": "a", "dimensions": 8}, "dimensions")):
        status, _, answer = request(api.port, "POST", "/v1/embeddings", body)
        assert status == 400 and answer["error"]["param"] == param, (body, answer)
    status, _, answer = request(api.port, "POST", "/v1/embeddings",
                                {"model": "chat", "input": "a"})
    assert status == 400 and answer["error"]["code"] == "embeddings_unsupported"
    status, headers, answer = request(api.port, "POST", "/v1/embeddings",
                                      {"model": "emb", "input": "a", "dimensions": 16,
                                       "user": "me"})
    assert status == 200 and headers["x-lmdesk-ignored"] == "user"
