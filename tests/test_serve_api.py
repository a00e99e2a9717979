"""lmdesk serve against the official openai client, with the real default model.

The model is added to the pool by path and loaded on the first request, the way
``lmdesk serve`` does it.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tui.engine.protocol import LoadParams
from tui.serve import ApiServer, EnginePool

KEY = "test-key-123"
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[ApiServer]:
    pool = EnginePool(queue_depth=4)
    pool.add_model(MODEL, LoadParams(model_path=str(smollm), n_ctx=2048), default=True)
    api = ApiServer(pool, "127.0.0.1", 0, api_key=KEY).start()
    yield api
    api.stop()
    pool.close()


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)


def _post(server: ApiServer, path: str, body: bytes, key: str = KEY) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "POST", path, body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_models_lists_the_model_before_it_is_loaded(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_not_streamed_has_usage_and_timings(
    client: openai.OpenAI, server: ApiServer
) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0, seed=1,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    timings = reply.model_extra["timings"] if reply.model_extra else {}
    for key in ("prompt_n", "prompt_per_second", "predicted_n", "predicted_per_second",
                "ttft", "cache_n"):
        assert key in timings, key
    assert timings["predicted_n"] == reply.usage.completion_tokens
    snap = server.stats.snapshot()
    assert snap.replies >= 1
    assert snap.last_model == MODEL
    assert snap.last_tokens_per_s > 0


def test_chat_streamed_matches_the_plain_reply(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    greedy = {"top_k": 1}

    def plain_reply() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=10, temperature=0,  # type: ignore[arg-type]
            extra_body=greedy,
        )

    # the first call evaluates the whole prompt; later ones reuse the KV cache, which can
    # change a close greedy pick: compare replies made in the same cache state
    plain_reply()
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=10, temperature=0,  # type: ignore[call-overload]
        extra_body=greedy, stream=True, stream_options={"include_usage": True},
    )
    pieces, finish, usage, roles = [], None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    plain = plain_reply()
    assert roles == ["assistant"]
    assert len(pieces) > 1
    assert "".join(pieces) == plain.choices[0].message.content
    assert finish == plain.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == len(pieces)


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    for _ in range(2):  # the second reply is made with the prompt cached, like the streamed one
        plain = client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0,
            extra_body={"top_k": 1},
        )
    assert plain.choices[0].text
    assert plain.usage is not None and plain.usage.completion_tokens <= 6
    streamed = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0,
        extra_body={"top_k": 1}, stream=True,
    )
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text == plain.choices[0].text


def test_wrong_key_is_401(server: ApiServer) -> None:
    bad = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.status_code == 401
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_api_key"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert "smollm2-135m" in str(info.value)


def test_unknown_field_is_ignored_and_named(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_body={"frobnicate": True},
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-lmdesk-ignored"] == "frobnicate"
    assert raw.parse().choices[0].message.content


def test_bad_json_and_big_body_answer_openai_errors(server: ApiServer) -> None:
    status, body = _post(server, "/v1/chat/completions", b'{"model": "x", "messages": [')
    assert status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_json"
    big = json.dumps({"model": MODEL, "prompt": "x" * (2 << 20)}).encode()
    status, body = _post(server, "/v1/completions", big)
    assert status == 413
    assert body["error"]["code"] == "body_too_large"


def test_too_long_prompt_is_a_400_not_a_crash(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="word " * 3000, max_tokens=2)
    assert "context window" in str(info.value)


def test_tokenize_counts_with_the_chat_template(server: ApiServer) -> None:
    status, body = _post(server, "/tokenize", json.dumps({"content": "hello world"}).encode())
    assert status == 200 and body["count"] == 2
    msgs = {"messages": [{"role": "user", "content": "hello world"}]}
    status, body = _post(server, "/tokenize", json.dumps(msgs).encode())
    assert status == 200 and body["count"] > 2
    status, _ = _post(server, "/tokenize", b'{"content": "x"}', key="nope")
    assert status == 401
