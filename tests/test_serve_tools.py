"""Tool calling through ``lmdesk serve`` (the client runs the tools, as with OpenAI), with the
official clients: the n8n-style sequence (tools -> tool calls -> the result sent back -> the
answer) on chat completions, the Responses API and Anthropic's Messages, streamed and not, on
a scripted model for the exact shapes; tool_choice and parallel_tool_calls reach the engine;
an engine that cannot call tools is a clear 400. The real model is in
test_serve_tools_real.py."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import openai
import pytest

from tests.serve_helpers import RecordingEngine, chat_body, request
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationStats,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
)
from tui.serve import ApiServer, EnginePool

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
CLOCK: Any = {"type": "function", "function": {"name": "clock", "description": "the time"}}
CALL = ToolCall("call_w1", "get_weather", '{"city": "Paris"}')
ANSWER = "It is sunny in Paris."
QUESTION: Any = [{"role": "user", "content": "Weather in Paris?"}]


class FragmentEngine(RecordingEngine):
    """Asks for two calls whose arguments arrive in pieces (as a real parser streams them),
    with no ids of its own, whenever tools are offered."""

    def generate(self, messages: Sequence[ChatMessage], sampling: SamplingParams, *,
                 raw_prompt: str | None = None, **kwargs: Any) -> Iterator[EngineEvent]:
        if not kwargs.get("tools"):
            yield from super().generate(messages, sampling, raw_prompt=raw_prompt, **kwargs)
            return
        self.tool_requests.append((tuple(kwargs["tools"]), kwargs.get("tool_choice", "auto")))
        calls = (ToolCall("", "get_weather", '{"city": "Paris"}'),
                 ToolCall("", "clock", "{}"))
        yield ToolCallDelta(0, 0, "", "get_weather", "")
        for piece in ('{"city', '": "Pa', 'ris"}'):
            yield ToolCallDelta(0, 0, arguments=piece)
        yield ToolCallDelta(0, 1, "", "clock", "{}")
        stats = GenerationStats(5, 0.0, 9, 0.0, 0.0, 0, 5, "tool_calls", 0.0)
        done = Done(0, "", stats, tool_calls=calls)
        self.dones.append(done)
        yield done


def _server(engine: RecordingEngine) -> ApiServer:
    engine.load()
    pool = EnginePool()
    pool.register("toolie", engine)
    return ApiServer(pool, "127.0.0.1", 0).start()


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine(ANSWER, tool_steps=[[CALL]])


@pytest.fixture
def server(engine: RecordingEngine) -> Iterator[ApiServer]:
    api = _server(engine)
    yield api
    api.stop()


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=30)


def _the_result_reached_the_engine(engine: RecordingEngine) -> None:
    history = engine.requests[-1]
    assistant = next(m for m in history if m.role == "assistant")
    assert assistant.tool_calls == (CALL,)
    result = history[-1]
    assert (result.role, result.content, result.tool_call_id, result.name) == (
        "tool", "18 C, sunny", "call_w1", "get_weather")


# --- chat completions ------------------------------------------------------------------------


def test_the_n8n_sequence_on_chat_completions(client: openai.OpenAI,
                                              engine: RecordingEngine) -> None:
    first = client.chat.completions.create(model="toolie", messages=QUESTION, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert first.usage is not None and first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == 0  # always there
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
            for c in calls] == [("call_w1", "function", "get_weather", {"city": "Paris"})]
    tools, choice_sent = engine.tool_requests[-1]
    assert [t.name for t in tools] == ["get_weather"] and choice_sent == "auto"
    assert json.loads(tools[0].parameters)["required"] == ["city"]
    history = [*QUESTION, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": "call_w1", "content": "18 C, sunny"}]
    final = client.chat.completions.create(model="toolie", messages=history, tools=[WEATHER])
    assert final.choices[0].message.content == ANSWER
    assert final.choices[0].finish_reason == "stop"
    _the_result_reached_the_engine(engine)


def test_the_n8n_sequence_streamed(client: openai.OpenAI, engine: RecordingEngine) -> None:
    stream = client.chat.completions.create(model="toolie", messages=QUESTION, tools=[WEATHER],
                                            stream=True)
    pieces: list[Any] = []
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [(p.index, p.id, p.function.name) for p in pieces] == [(0, "call_w1", "get_weather")]
    assert json.loads(pieces[0].function.arguments) == {"city": "Paris"}
    history = [*QUESTION,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_w1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_w1",
                "content": [{"type": "text", "text": "18 C, sunny"}]}]
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="toolie", messages=history, tools=[WEATHER], stream=True) if c.choices)
    assert text == ANSWER
    _the_result_reached_the_engine(engine)


def test_streamed_arguments_come_in_pieces_with_an_id_on_the_first() -> None:
    api = _server(FragmentEngine("unused"))
    try:
        client = openai.OpenAI(base_url=api.url, api_key="none", max_retries=0)
        stream = client.chat.completions.create(model="toolie", messages=QUESTION,
                                                tools=[WEATHER, CLOCK], stream=True)
        pieces = [p for c in stream for ch in c.choices for p in ch.delta.tool_calls or []]
        assert [p.index for p in pieces] == [0, 0, 0, 0, 1]
        assert [bool(p.id) for p in pieces] == [True, False, False, False, True]
        assert pieces[0].id != pieces[4].id and pieces[0].id.startswith("call_")  # type: ignore[union-attr]
        assert "".join(p.function.arguments for p in pieces[:4]) == '{"city": "Paris"}'  # type: ignore[union-attr,misc]
        # the plain answer names the same calls, ids made up where the engine had none
        plain = client.chat.completions.create(model="toolie", messages=QUESTION,
                                               tools=[WEATHER, CLOCK])
        calls = plain.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls] == ["get_weather", "clock"]  # type: ignore[union-attr]
        assert all(c.id.startswith("call_") for c in calls)
        # parallel_tool_calls false: the first call only
        one = client.chat.completions.create(model="toolie", messages=QUESTION,
                                             tools=[WEATHER, CLOCK], parallel_tool_calls=False)
        assert [c.function.name for c in one.choices[0].message.tool_calls or []] == [  # type: ignore[union-attr]
            "get_weather"]
        stream = client.chat.completions.create(model="toolie", messages=QUESTION, stream=True,
                                                tools=[WEATHER, CLOCK], parallel_tool_calls=False)
        assert {p.index for c in stream for ch in c.choices for p in ch.delta.tool_calls or []
                } == {0}
    finally:
        api.stop()


@pytest.mark.parametrize(("sent", "engine_gets"), [
    ("auto", "auto"),
    ("none", "none"),
    ("required", "required"),
    ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
])
def test_tool_choice_reaches_the_engine(server: ApiServer, engine: RecordingEngine, sent: Any,
                                        engine_gets: str) -> None:
    status, _, body = request(server.port, "POST", "/v1/chat/completions",
                              chat_body(tools=[WEATHER], tool_choice=sent))
    assert status == 200, body
    assert engine.tool_requests[-1][1] == engine_gets


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"functions": [WEATHER["function"]]}, "functions"),
    ({"messages": [{"role": "tool", "content": "4"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x"},
                   {"role": "tool", "tool_call_id": "c9", "content": "4"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
     "messages[0].tool_calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].id"),
])
def test_bad_tool_fields_are_a_400_naming_them(server: ApiServer, fields: dict[str, Any],
                                               param: str) -> None:
    status, _, body = request(server.port, "POST", "/v1/chat/completions", chat_body(**fields))
    assert status == 400, body
    assert body["error"]["param"] == param, body


def test_an_engine_that_cannot_call_tools_is_a_clear_400() -> None:
    engine = RecordingEngine("plain answer")  # no tool_steps: it cannot call tools
    api = _server(engine)
    try:
        status, _, body = request(api.port, "POST", "/v1/chat/completions",
                                  chat_body(tools=[WEATHER]))
        assert status == 400 and body["error"]["code"] == "tools_unsupported", body
        assert "cannot call tools" in body["error"]["message"]
        status, _, body = request(api.port, "POST", "/v1/chat/completions",
                                  chat_body(stream=True, tools=[WEATHER]))
        assert status == 400 and body["error"]["code"] == "tools_unsupported", body
        # tool_choice none: no call would be made anyway, so it answers
        status, _, body = request(api.port, "POST", "/v1/chat/completions",
                                  chat_body(tools=[WEATHER], tool_choice="none"))
        assert status == 200 and body["choices"][0]["message"]["content"] == "plain answer"
    finally:
        api.stop()


# --- the Responses API -----------------------------------------------------------------------


RESPONSES_TOOL: Any = {"type": "function", "name": "get_weather",
                       "description": "The weather in a city",
                       "parameters": WEATHER["function"]["parameters"], "strict": True}


def test_the_n8n_sequence_on_the_responses_api(client: openai.OpenAI,
                                               engine: RecordingEngine) -> None:
    first = client.responses.create(model="toolie", input="Weather in Paris?",
                                    tools=[RESPONSES_TOOL])
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert (call.call_id, call.name, json.loads(call.arguments)) == (  # type: ignore[union-attr]
        "call_w1", "get_weather", {"city": "Paris"})
    assert first.tools[0].name == "get_weather"  # type: ignore[union-attr]
    final = client.responses.create(model="toolie", tools=[RESPONSES_TOOL], input=[
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": "call_w1", "output": "18 C, sunny"},
    ])
    assert final.output_text == ANSWER
    _the_result_reached_the_engine(engine)


def test_the_responses_api_streams_function_calls() -> None:
    api = _server(FragmentEngine("unused"))
    try:
        client = openai.OpenAI(base_url=api.url, api_key="none", max_retries=0)
        clock = {"type": "function", "name": "clock", "parameters": {"type": "object"}}
        with client.responses.stream(model="toolie", input="Weather?",
                                     tools=[RESPONSES_TOOL, clock]) as stream:
            events = list(stream)
            final = stream.get_final_response()
        types = [e.type for e in events]
        assert types.count("response.function_call_arguments.delta") == 4
        assert types.count("response.output_item.done") == 2
        assert "response.output_text.delta" not in types
        calls = [item for item in final.output if item.type == "function_call"]
        assert [(c.name, c.arguments) for c in calls] == [  # type: ignore[union-attr]
            ("get_weather", '{"city": "Paris"}'), ("clock", "{}")]
        assert len(final.output) == 2  # no empty message item
        one = client.responses.create(model="toolie", input="Weather?", parallel_tool_calls=False,
                                      tools=[RESPONSES_TOOL, clock], tool_choice="required")
        assert [item.type for item in one.output] == ["function_call"]
    finally:
        api.stop()


def test_responses_tool_fields_are_checked(server: ApiServer, engine: RecordingEngine) -> None:
    def post(**fields: Any) -> tuple[int, Any]:
        status, _, body = request(server.port, "POST", "/v1/responses",
                                  {"input": "Weather?", **fields})
        return status, body

    status, body = post(tools=[RESPONSES_TOOL],
                        tool_choice={"type": "function", "name": "get_weather"})
    assert status == 200 and engine.tool_requests[-1][1] == "get_weather", body
    for fields, param in [({"tools": [{"type": "web_search_preview"}]}, "tools[0].type"),
                          ({"tools": [RESPONSES_TOOL], "tool_choice": {"type": "function",
                                                                        "name": "x"}},
                           "tool_choice"),
                          ({"input": [{"type": "function_call_output", "output": "4"}]},
                           "input[0].call_id")]:
        status, body = post(**fields)
        assert status == 400 and body["error"]["param"] == param, (fields, body)


# --- Anthropic's Messages --------------------------------------------------------------------


CLAUDE_TOOL: Any = {"name": "get_weather", "description": "The weather in a city",
                    "input_schema": WEATHER["function"]["parameters"]}


def _claude(api: ApiServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api.url.removesuffix("/v1"), api_key="x",
                               max_retries=0, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_the_n8n_sequence_on_anthropic_messages(server: ApiServer, engine: RecordingEngine,
                                                stream: bool) -> None:
    claude = _claude(server)
    ask: Any = {"model": "toolie", "max_tokens": 64, "tools": [CLAUDE_TOOL],
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    if stream:
        with claude.messages.stream(**ask) as events:
            first = events.get_final_message()
    else:
        first = claude.messages.create(**ask)
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["tool_use"]
    use = first.content[0]
    assert (use.id, use.name, use.input) == ("call_w1", "get_weather",  # type: ignore[union-attr]
                                             {"city": "Paris"})
    ask["messages"] += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1",
                                      "content": "18 C, sunny"}]},
    ]
    final = claude.messages.create(**ask)
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == ANSWER  # type: ignore[union-attr]
    _the_result_reached_the_engine(engine)


def test_anthropic_streams_tool_input_in_pieces_and_maps_tool_choice() -> None:
    engine = FragmentEngine("unused")
    api = _server(engine)
    try:
        claude = _claude(api)
        clock = {"name": "clock", "input_schema": {"type": "object"}}
        with claude.messages.stream(model="toolie", max_tokens=64, tools=[CLAUDE_TOOL, clock],
                                    messages=[{"role": "user", "content": "Weather?"}]) as s:
            deltas = [e for e in s if e.type == "content_block_delta"]
            final = s.get_final_message()
        assert [e.delta.type for e in deltas] == ["input_json_delta"] * 4  # type: ignore[union-attr]
        assert [(b.name, b.input) for b in final.content] == [  # type: ignore[union-attr]
            ("get_weather", {"city": "Paris"}), ("clock", {})]
        one = claude.messages.create(
            model="toolie", max_tokens=64, tools=[CLAUDE_TOOL, clock],
            tool_choice={"type": "tool", "name": "clock", "disable_parallel_tool_use": True},
            messages=[{"role": "user", "content": "Weather?"}])
        assert [b.name for b in one.content] == ["get_weather"]  # type: ignore[union-attr]
        assert engine.tool_requests[-1][1] == "clock"
        claude.messages.create(model="toolie", max_tokens=64, tools=[CLAUDE_TOOL],
                               tool_choice={"type": "any"},
                               messages=[{"role": "user", "content": "Weather?"}])
        assert engine.tool_requests[-1][1] == "required"
    finally:
        api.stop()


def test_an_anthropic_error_result_tells_the_model(server: ApiServer,
                                                   engine: RecordingEngine) -> None:
    status, _, body = request(server.port, "POST", "/v1/messages", {
        "max_tokens": 32, "tools": [CLAUDE_TOOL], "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                               "name": "get_weather", "input": {"city": "X"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                 "content": [{"type": "text", "text": "no such city"}]},
                {"type": "text", "text": "Try again?"}]}]})
    assert status == 200, body
    sent = engine.requests[-1]
    assert [(m.role, m.content) for m in sent[-2:]] == [("tool", "Error: no such city"),
                                                       ("user", "Try again?")]
    assert sent[-2].name == "get_weather" and sent[1].tool_calls[0].arguments == '{"city": "X"}'
