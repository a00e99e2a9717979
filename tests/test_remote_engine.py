"""RemoteEngine against a real lmdesk server (in-process) and against small fake servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.serve_helpers import slow_engine, wait_for
from tui import offline
from tui.engine.base import Engine
from tui.engine.errors import InvalidParameter, ModelLoadError
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, SamplingParams, TextDelta
from tui.engine.remote import RemoteEngine
from tui.offline import install_guard, uninstall_guard
from tui.serve import ApiServer, EnginePool

GREEDY = SamplingParams(temperature=0.0, top_k=1, max_tokens=12, seed=1)
HI = [ChatMessage("user", "Say hello.")]


def _collect(engine: RemoteEngine, **kwargs: Any) -> tuple[list[TextDelta], Done]:
    deltas: list[TextDelta] = []
    done = None
    for event in engine.generate(kwargs.pop("messages", HI), kwargs.pop("sampling", GREEDY),
                                 **kwargs):
        if isinstance(event, Done):
            done = event
        else:
            deltas.append(event)
    assert done is not None
    return deltas, done


@pytest.fixture(scope="module")
def lmdesk(smollm_engine: LocalEngine) -> Iterator[ApiServer]:
    """lmdesk serve sharing the session's loaded model, plus a slow scripted one."""
    pool = EnginePool()
    pool.register("smollm2-135m", smollm_engine, default=True)
    pool.register("slow", slow_engine(n_tokens=200, delay_s=0.02))
    api = ApiServer(pool, "127.0.0.1", 0, api_key="k").start()
    yield api
    api.stop()


def test_remote_streams_from_lmdesk_serve(lmdesk: ApiServer, smollm_engine: LocalEngine) -> None:
    remote = RemoteEngine(lmdesk.url.removesuffix("/v1"), api_key="k")
    assert isinstance(remote, Engine)
    assert remote.list_models() == ["smollm2-135m", "slow"]
    info = remote.load()
    assert info.architecture == "remote" and info.name == "smollm2-135m"
    assert info.n_ctx == 2048 and not info.is_base_model
    assert remote.base_url == lmdesk.url
    deltas, done = _collect(remote)
    assert done.error is None and done.stats.stop_reason in ("stop", "length")
    assert done.text == "".join(d.text for d in deltas) and done.text
    stats = done.stats
    assert stats.generated_tokens == len(deltas)
    assert stats.prompt_tokens > 5
    assert stats.time_to_first_token_s > 0 and stats.generation_tokens_per_s > 0
    assert stats.reused_tokens + stats.evaluated_prompt_tokens == stats.prompt_tokens
    _, raw = _collect(remote, raw_prompt="The capital of France is")
    assert raw.text and raw.error is None
    assert remote.count_tokens("hello world") == smollm_engine.count_tokens("hello world")
    assert not remote.token_count_is_estimate
    assert remote.count_tokens(messages=HI) == smollm_engine.count_tokens(messages=HI)
    assert not remote.token_count_is_estimate


def test_cancel_closes_the_stream_and_the_server_stops(lmdesk: ApiServer) -> None:
    remote = RemoteEngine(lmdesk.url, api_key="k", model="slow")
    deltas: list[TextDelta] = []
    done = None
    for event in remote.generate(HI, SamplingParams(max_tokens=200)):
        if isinstance(event, Done):
            done = event
        else:
            deltas.append(event)
            if len(deltas) == 3:
                threading.Thread(target=remote.cancel).start()
    assert done is not None and done.stats.stop_reason == "cancelled" and done.error is None
    assert done.text.startswith(" t0 t1 t2")
    assert wait_for(lambda: lmdesk.stats.snapshot().cancelled >= 1)


def test_wrong_key_and_unknown_model_fail_to_load(lmdesk: ApiServer) -> None:
    with pytest.raises(ModelLoadError, match="401: check the API key"):
        RemoteEngine(lmdesk.url, api_key="nope").load()
    with pytest.raises(ModelLoadError, match=r"no model 'llama-70b'.*smollm2-135m"):
        RemoteEngine(lmdesk.url, api_key="k", model="llama-70b").load()


def test_refused_connection_says_so() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    remote = RemoteEngine(f"http://127.0.0.1:{port}/v1", model="m")
    _, done = _collect(remote)
    assert done.stats.stop_reason == "error"
    assert done.error == f"connection refused by http://127.0.0.1:{port}: is the server running?"
    with pytest.raises(ModelLoadError, match="connection refused"):
        remote.load()


def test_bad_urls_are_refused() -> None:
    with pytest.raises(InvalidParameter):
        RemoteEngine("localhost:8080")
    assert RemoteEngine("http://h:1/v1/").base_url == "http://h:1/v1"
    assert RemoteEngine("http://h:1/api").base_url == "http://h:1/api/v1"


# --- fake servers ----------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


@contextmanager
def fake(routes: dict[str, Route]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny HTTP/1.0 server: ``routes`` maps "METHOD /path" to a handler; bodies are kept."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _go(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            seen.append({"path": self.path, **body})
            route = routes.get(f"{self.command} {self.path}")
            if route is None:
                self.send_error(404)
            else:
                route(self, body)

        do_GET = do_POST = _go

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _json(handler: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _sse(handler: BaseHTTPRequestHandler, events: list[Any], done: bool = True) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for event in events:
        handler.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        handler.wfile.flush()
    if done:
        handler.wfile.write(b"data: [DONE]\n\n")


def _piece(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


MODELS: Route = lambda h, b: _json(h, 200, {"data": [{"id": "m1", "max_model_len": 4096}]})  # noqa: E731


def test_a_dropped_stream_keeps_the_partial_reply() -> None:
    routes = {
        "GET /v1/models": MODELS,
        "POST /v1/chat/completions": lambda h, b: _sse(h, [_piece("a"), _piece("b"),
                                                           _piece("c")], done=False),
    }
    with fake(routes) as (url, _):
        remote = RemoteEngine(url)
        assert remote.load().n_ctx == 4096
        deltas, done = _collect(remote)
    assert [d.text for d in deltas] == ["a", "b", "c"]
    assert done.text == "abc" and done.stats.stop_reason == "error"
    assert done.error == f"the stream from {url} dropped after 3 tokens"


def test_a_stream_dropped_after_one_token_says_one_token() -> None:
    routes = {
        "GET /v1/models": MODELS,
        "POST /v1/chat/completions": lambda h, b: _sse(h, [_piece("a")], done=False),
    }
    with fake(routes) as (url, _):
        remote = RemoteEngine(url)
        remote.load()
        _deltas, done = _collect(remote)
    assert done.error == f"the stream from {url} dropped after 1 token"


def test_a_silent_server_times_out() -> None:
    routes = {"GET /v1/models": MODELS, "POST /v1/chat/completions": lambda h, b: time.sleep(1.5)}
    with fake(routes) as (url, _):
        remote = RemoteEngine(url, model="m1", timeout_s=0.3)
        start = time.monotonic()
        deltas = []
        done = None
        for event in remote.generate(HI, GREEDY):
            if isinstance(event, Done):
                done = event
            else:
                deltas.append(event)
    assert done is not None and done.stats.stop_reason == "error"
    assert done.error is not None and "timed out after 0.3 s" in done.error
    assert time.monotonic() - start < 1.4


def test_a_strict_server_gets_only_standard_fields_and_no_tokenizer_means_estimates() -> None:
    def chat(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if "top_k" in body:
            _json(h, 400, {"error": {"message": "Unrecognized request argument: top_k"}})
        else:
            final = {**_piece("!", "length"),
                     "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
            _sse(h, [_piece("Hi"), final])

    with fake({"GET /v1/models": MODELS, "POST /v1/chat/completions": chat}) as (url, seen):
        remote = RemoteEngine(url)
        _, done = _collect(remote)
        assert done.text == "Hi!" and done.stats.stop_reason == "length"
        assert done.stats.prompt_tokens == 7 and done.stats.generated_tokens == 2
        _collect(remote)
        posts = [s for s in seen if s["path"] == "/v1/chat/completions"]
        assert ["top_k" in p for p in posts] == [True, False, False]
        assert remote.count_tokens("x" * 40) == 10
        assert remote.token_count_is_estimate


def test_llama_server_tokenize_and_a_plain_json_answer() -> None:
    routes = {
        "GET /v1/models": MODELS,
        "POST /tokenize": lambda h, b: _json(h, 200, {"tokens": [1, 2, 3]}),
        "POST /v1/completions": lambda h, b: _json(h, 200, {
            "choices": [{"text": "whole", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        "POST /v1/chat/completions": lambda h, b: _json(h, 500, {
            "error": {"message": "out of memory"}}),
    }
    with fake(routes) as (url, _):
        remote = RemoteEngine(url)
        assert remote.count_tokens("abc") == 3 and not remote.token_count_is_estimate
        _, done = _collect(remote, raw_prompt="x")
        assert done.text == "whole" and done.error is None
        _, done = _collect(remote)
        assert done.error == f"{url} answered 500: out of memory"


def test_the_endpoint_is_let_through_offline_mode(
    lmdesk: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tui.engine.remote as remote_module

    opened: list[str] = []
    real = offline.allow_network

    @contextmanager
    def recording(for_what: str, hosts: tuple[str, ...] = ()) -> Iterator[list[str]]:
        opened.append(for_what)
        with real(for_what, hosts) as hosts_opened:
            yield hosts_opened

    monkeypatch.setattr(remote_module, "allow_network", recording)
    install_guard()
    try:
        remote = RemoteEngine(lmdesk.url, api_key="k", model="slow")
        assert remote.load().name == "slow"
        _, done = _collect(remote, sampling=SamplingParams(max_tokens=3))
        assert done.text == " t0 t1 t2"
    finally:
        uninstall_guard()
    assert opened == [lmdesk.url.removesuffix("/v1")] * 2


# --- tools ----------------------------------------------------------------------------------


def _call_piece(index: int, *, call_id: str = "", name: str = "", args: str = "",
                finish: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    item: dict[str, Any] = {"index": index, "function": function}
    if call_id:
        item.update(id=call_id, type="function")
    return {"choices": [{"index": 0, "delta": {"tool_calls": [item]},
                         "finish_reason": finish}]}


def test_tools_go_to_the_server_and_streamed_calls_come_back_assembled() -> None:
    from tui.engine.protocol import ToolCall, ToolCallDelta, ToolSpec

    weather = ToolSpec("get_weather", "The weather.", json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}}))
    clock = ToolSpec("clock", "The time.")
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        _call_piece(0, call_id="call_a", name="get_weather"),
        _call_piece(0, args='{"ci'), _call_piece(0, args='ty": "Oslo"}'),
        _call_piece(1, call_id="call_b", name="clock", args="{}"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    routes = {"GET /v1/models": MODELS,
              "POST /v1/chat/completions": lambda h, b: _sse(h, events)}
    with fake(routes) as (url, seen):
        remote = RemoteEngine(url)
        got = list(remote.generate(HI, GREEDY, tools=[weather, clock],
                                   tool_choice="get_weather"))
        done = got[-1]
        assert isinstance(done, Done) and done.error is None
        assert done.stats.stop_reason == "tool_calls" and done.text == ""
        assert done.tool_calls == (ToolCall("call_a", "get_weather", '{"city": "Oslo"}'),
                                   ToolCall("call_b", "clock", "{}"))
        deltas = [e for e in got if isinstance(e, ToolCallDelta)]
        assert [(d.index, d.name, d.arguments) for d in deltas] == [
            (0, "get_weather", ""), (0, "", '{"ci'), (0, "", 'ty": "Oslo"}'), (1, "clock", "{}")]
        body = seen[-1]
        assert body["tools"][0] == {"type": "function", "function": {
            "name": "get_weather", "description": "The weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

        # the history goes back in OpenAI's shape: the assistant's calls, then the result
        history = [*HI, ChatMessage("assistant", "", tool_calls=done.tool_calls[:1]),
                   ChatMessage("tool", "12 C", tool_call_id="call_a", name="get_weather")]
        list(remote.generate(history, GREEDY, tools=[weather], tool_choice="required"))
        body = seen[-1]
        assert body["tool_choice"] == "required"
        assert body["messages"][-2] == {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
        assert body["messages"][-1] == {"role": "tool", "content": "12 C",
                                        "tool_call_id": "call_a", "name": "get_weather"}


def test_a_whole_answer_with_tool_calls_and_a_choice_naming_no_tool() -> None:
    from tui.engine.errors import EngineError
    from tui.engine.protocol import ToolSpec

    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "x1", "type": "function", "function": {"name": "clock",
                                                       "arguments": {"zone": "UTC"}}}]}
    routes = {"GET /v1/models": MODELS, "POST /v1/chat/completions": lambda h, b: _json(
        h, 200, {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]})}
    with fake(routes) as (url, seen):
        remote = RemoteEngine(url)
        done = list(remote.generate(HI, GREEDY, tools=[ToolSpec("clock")]))[-1]
        assert isinstance(done, Done) and done.stats.stop_reason == "tool_calls"
        assert [(c.id, c.name, json.loads(c.arguments)) for c in done.tool_calls] == [
            ("x1", "clock", {"zone": "UTC"})]
        assert seen[-1]["tool_choice"] == "auto"
        with pytest.raises(EngineError, match="'nope'"):
            list(remote.generate(HI, GREEDY, tools=[ToolSpec("clock")], tool_choice="nope"))
