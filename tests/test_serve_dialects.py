"""The other APIs ``lmdesk serve`` speaks, with their official clients: OpenAI's Responses API
(what n8n sends by default) and Anthropic's Messages API, on the real default model; their
reasoning items on a scripted thinking model; and the llama-server style figures
(``/health``, ``/metrics``, ``/slots``, ``/v1/models/{id}``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.serve_helpers import RecordingEngine, request, wait_for
from tui.engine.protocol import LoadParams
from tui.serve import ApiServer, EnginePool, ServerLimits

KEY = "dialect-key"
MODEL = "smollm2-135m"
N8N_BODY = {"input": [{"type": "message", "role": "user", "content": "Say hello"}],
            "model": "smollm2-135m", "stream": False, "text": {}}


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[ApiServer]:
    pool = EnginePool(queue_depth=4)
    pool.add_model(MODEL, LoadParams(model_path=str(smollm), n_ctx=2048), default=True)
    # n8n sends no token bound: keep the server's default short
    limits = ServerLimits(default_max_tokens=32)
    api = ApiServer(pool, "127.0.0.1", 0, api_key=KEY, limits=limits).start()
    yield api
    api.stop()
    pool.close()


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture
def claude(server: ApiServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), api_key=KEY,
                               max_retries=0, timeout=120)


GREEDY: dict[str, Any] = {"top_k": 1}


# --- the Responses API -----------------------------------------------------------------------


def test_responses_plain_answers_with_usage(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=12,
                                    temperature=0, extra_body=GREEDY)
    assert reply.object == "response" and reply.status in ("completed", "incomplete")
    assert reply.output_text.strip()
    message = [item for item in reply.output if item.type == "message"]
    assert len(message) == 1 and message[0].content[0].type == "output_text"
    assert reply.usage is not None and 0 < reply.usage.output_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_responses_streamed_matches_the_plain_answer(client: openai.OpenAI) -> None:
    kwargs: Any = {"model": MODEL, "input": [{"role": "user", "content": "Name a colour."}],
                   "max_output_tokens": 12, "temperature": 0, "extra_body": GREEDY}
    client.responses.create(**kwargs)  # same KV-cache state for the two compared below
    types, deltas = [], []
    with client.responses.stream(**kwargs) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    plain = client.responses.create(**kwargs)
    assert types[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.done" in types and types[-1] == "response.completed"
    assert len(deltas) > 1 and "".join(deltas) == final.output_text == plain.output_text
    assert final.usage is not None and final.usage.output_tokens == len(deltas)


def test_responses_instructions_become_the_system_message(client: openai.OpenAI,
                                                          server: ApiServer) -> None:
    counted = []
    pirate = "You are a pirate captain. " * 20
    for instructions in (None, pirate):  # None: the template's own default system prompt
        reply = client.responses.create(model=MODEL, input="Hello", max_output_tokens=2,
                                        instructions=instructions)  # type: ignore[arg-type]
        assert reply.usage is not None
        counted.append(reply.usage.input_tokens)
        assert reply.instructions == instructions
    assert counted[1] > counted[0] + 60


def test_the_exact_n8n_body_is_answered(server: ApiServer) -> None:
    status, headers, body = request(server.port, "POST", "/v1/responses", N8N_BODY,
                                    {"Authorization": f"Bearer {KEY}"})
    assert status == 200, body
    assert body["status"] in ("completed", "incomplete")
    text = "".join(part["text"] for item in body["output"] if item["type"] == "message"
                   for part in item["content"])
    assert text.strip()
    assert body["store"] is False and "x-lmdesk-ignored" not in headers


BAD_RESPONSES = [
    ({"input": []}, "input"),
    ({"input": ""}, "input"),
    ({"input": [{"type": "image_generation_call", "id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "wizard", "content": "hi"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content"),
    ({"input": "hi", "previous_response_id": "resp_123"}, "previous_response_id"),
    ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "temperature": "warm"}, "temperature"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "4"}]}, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0]"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_RESPONSES)
def test_bad_responses_inputs_are_400_in_openai_shape(server: ApiServer, fields: dict[str, Any],
                                                      param: str) -> None:
    status, _, body = request(server.port, "POST", "/v1/responses", {"model": MODEL, **fields},
                              {"Authorization": f"Bearer {KEY}"})
    assert status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


def test_the_openai_client_sees_a_bad_response_request_as_bad_request(
        client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
    assert "whole conversation" in str(info.value)


# --- the Anthropic Messages API --------------------------------------------------------------


def test_anthropic_messages_plain(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=MODEL, max_tokens=12, system="Answer briefly.",
        extra_body={"temperature": 0, "top_k": 1},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}],
    )
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.content[0].type == "text" and reply.content[0].text.strip()
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert 0 < reply.usage.output_tokens <= 12


def test_anthropic_messages_streamed_matches_plain(claude: anthropic.Anthropic) -> None:
    kwargs: Any = {"model": MODEL, "max_tokens": 12,
                   "extra_body": {"temperature": 0, "top_k": 1},
                   "messages": [{"role": "user", "content": "Name a fruit."}]}
    claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    plain = claude.messages.create(**kwargs)
    assert len(pieces) > 1
    assert "".join(pieces) == final.content[0].text == plain.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens
    raw = claude.messages.create(**kwargs, stream=True)
    kinds = [event.type for event in raw]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop",
            "message_delta"} <= set(kinds)


def test_anthropic_stop_sequences_and_auth(claude: anthropic.Anthropic, server: ApiServer
                                           ) -> None:
    reply = claude.messages.create(model=MODEL, max_tokens=40, stop_sequences=["e"],
                                   extra_body={"temperature": 0, "top_k": 1},
                                   messages=[{"role": "user", "content": "Say hello there."}])
    assert "e" not in reply.content[0].text  # type: ignore[union-attr]
    wrong = anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), api_key="nope",
                                max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model=MODEL, max_tokens=2,
                              messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model=MODEL, max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    count = claude.messages.count_tokens(model=MODEL,
                                         messages=[{"role": "user", "content": "hello world"}])
    assert count.input_tokens > 2


# --- thinking models, on a scripted one ----------------------------------------------------


@pytest.fixture
def thinker() -> Iterator[ApiServer]:
    engine = RecordingEngine("The answer is 4.", reasoning="2 and 2 make 4. ")
    engine.load()
    pool = EnginePool()
    pool.register("thinker", engine)
    with ApiServer(pool, "127.0.0.1", 0) as api:
        yield api


def test_responses_return_a_reasoning_item(thinker: ApiServer) -> None:
    client = openai.OpenAI(base_url=thinker.url, api_key="x", max_retries=0)
    reply = client.responses.create(model="thinker", input="2+2?")
    kinds = [item.type for item in reply.output]
    assert kinds == ["reasoning", "message"]
    assert reply.output[0].content[0].text == "2 and 2 make 4. "  # type: ignore[union-attr,index]
    assert reply.output_text == "The answer is 4."
    assert reply.usage is not None and reply.usage.output_tokens_details.reasoning_tokens == 6
    with client.responses.stream(model="thinker", input="2+2?") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types.index("response.reasoning_text.delta") < types.index(
        "response.output_text.delta")
    assert [item.type for item in final.output] == ["reasoning", "message"]
    off = client.responses.create(model="thinker", input="2+2?", reasoning={"effort": "none"})
    assert [item.type for item in off.output] == ["message"]


def test_anthropic_returns_a_thinking_block(thinker: ApiServer) -> None:
    claude = anthropic.Anthropic(base_url=thinker.url.removesuffix("/v1"), api_key="x",
                                 max_retries=0)
    reply = claude.messages.create(model="thinker", max_tokens=50,
                                   messages=[{"role": "user", "content": "2+2?"}])
    assert [b.type for b in reply.content] == ["thinking", "text"]
    with claude.messages.stream(model="thinker", max_tokens=50,
                                messages=[{"role": "user", "content": "2+2?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == "2 and 2 make 4. "  # type: ignore[union-attr]
    assert final.content[1].text == "The answer is 4."  # type: ignore[union-attr]
    off = claude.messages.create(model="thinker", max_tokens=50, thinking={"type": "disabled"},
                                 messages=[{"role": "user", "content": "2+2?"}])
    assert [b.type for b in off.content] == ["text"]


# --- llama-server style figures --------------------------------------------------------------


def test_health_says_loading_while_the_default_model_loads() -> None:
    pool = EnginePool(engine_factory=lambda params: RecordingEngine("hi", load_delay_s=2.0))
    pool.add_model("later", LoadParams(model_path="/nowhere/later.gguf"), default=True)
    with ApiServer(pool, "127.0.0.1", 0) as api:
        assert request(api.port, "GET", "/health")[2] == {"status": "ok"}  # not asked for yet
        asked = threading.Thread(target=lambda: request(
            api.port, "POST", "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}]}), daemon=True)
        asked.start()
        assert wait_for(lambda: request(api.port, "GET", "/health")[0] == 503, 5)
        asked.join(10)
        status, _, body = request(api.port, "GET", "/health")
        assert (status, body) == (200, {"status": "ok"})


def test_models_by_id_metrics_and_slots(server: ApiServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and (model.model_extra or {})["meta"]["n_ctx"] == 2048
    auth = {"Authorization": f"Bearer {KEY}"}
    status, headers, text = request(server.port, "GET", "/metrics", headers=auth)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    values = dict(re.findall(r"^(llamacpp:\w+) (\S+)$", text.decode(), re.M))
    for name in ("prompt_tokens_total", "tokens_predicted_total", "predicted_tokens_seconds",
                 "requests_processing", "requests_deferred", "kv_cache_usage_ratio"):
        assert f"llamacpp:{name}" in values, name
    assert float(values["llamacpp:tokens_predicted_total"]) >= 5
    assert float(values["llamacpp:predicted_tokens_seconds"]) > 0
    assert 0 < float(values["llamacpp:kv_cache_usage_ratio"]) < 1
    assert f'lmdesk:loaded{{model="{MODEL}"}} 1' in text.decode()
    status, _, slots = request(server.port, "GET", "/slots", headers=auth)
    assert status == 200 and slots[0]["n_ctx"] == 2048 and slots[0]["model"] == MODEL
    assert slots[0]["is_processing"] is False and slots[0]["next_token"][0]["n_decoded"] >= 5
    assert "prompt" not in json.dumps(slots).replace("n_prompt", "")
    assert request(server.port, "GET", "/metrics")[0] == 401  # the figures need the key
    from tui.monitor.remote import fetch

    figures = fetch(server.url, KEY, timeout=10)  # the monitor reads lmdesk as a llama-server
    rows = dict(figures.rows)
    assert figures.server == "llama-server", figures
    assert rows["slots"] == "0/1 busy" and "srv gen" in rows and "srv kv" in rows
