"""The API's edges with a scripted engine: queue, disconnects, bad input, limits, safety."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.serve_helpers import (
    RecordingEngine,
    chat_body,
    raw_post,
    request,
    slow_engine,
    wait_for,
)
from tui.engine.protocol import Done, SamplingParams
from tui.serve import ApiServer, EnginePool, ServerLimits, UnsafeBind
from tui.serve.watch import Canceller


@pytest.fixture
def engine() -> RecordingEngine:
    return slow_engine()


@pytest.fixture
def server(engine: RecordingEngine) -> Iterator[ApiServer]:
    pool = EnginePool(queue_depth=1)
    pool.register("slow", engine)
    fast = RecordingEngine("Hello there, friend.")
    fast.load()
    pool.register("fast", fast)
    api = ApiServer(pool, "127.0.0.1", 0, limits=ServerLimits(max_tokens_limit=50)).start()
    yield api
    api.stop()


def _stream_in_thread(port: int, model: str, results: list[int]) -> threading.Thread:
    def run() -> None:
        status, _, _ = request(port, "POST", "/v1/chat/completions", chat_body(True, model=model))
        results.append(status)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_full_queue_answers_429_and_queued_requests_are_served(
    server: ApiServer, engine: RecordingEngine
) -> None:
    results: list[int] = []
    first = _stream_in_thread(server.port, "slow", results)
    assert engine.started.wait(5)
    second = _stream_in_thread(server.port, "slow", results)  # waits: the queue holds one
    assert wait_for(lambda: server.stats.snapshot().active == 2)
    status, headers, body = request(server.port, "POST", "/v1/chat/completions",
                                    chat_body(model="slow"))
    assert status == 429
    assert headers["retry-after"] == "1"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "queue_full"
    # another model has its own queue
    status, _, body = request(server.port, "POST", "/v1/chat/completions", chat_body(model="fast"))
    assert status == 200 and body["choices"][0]["message"]["content"] == "Hello there, friend."
    first.join(10)
    second.join(10)
    assert results == [200, 200]
    assert len(engine.dones) == 2
    assert server.stats.snapshot().rejected == 1


def test_disconnect_mid_stream_cancels_the_generation(
    server: ApiServer, engine: RecordingEngine
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", json.dumps(chat_body(True, model="slow")),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")  # the role chunk
    resp.readline()
    assert b"t0" in resp.readline()
    conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    conn.close()
    assert wait_for(lambda: len(engine.dones) == 1)
    done = engine.dones[0]
    assert done.stats.stop_reason == "cancelled"
    assert done.stats.generated_tokens < 60
    assert engine.cancels >= 1
    assert wait_for(lambda: server.stats.snapshot().cancelled == 1)
    assert server.stats.snapshot().active == 0


def test_disconnect_before_a_plain_reply_cancels_it(
    server: ApiServer, engine: RecordingEngine
) -> None:
    sock = raw_post(server.port, chat_body(model="slow"))
    assert engine.started.wait(5)
    sock.close()
    assert wait_for(lambda: len(engine.dones) == 1)
    assert engine.dones[0].stats.stop_reason == "cancelled"
    assert wait_for(lambda: server.stats.snapshot().cancelled == 1)


def test_disconnect_while_queued_never_generates(
    server: ApiServer, engine: RecordingEngine
) -> None:
    results: list[int] = []
    first = _stream_in_thread(server.port, "slow", results)
    assert engine.started.wait(5)
    sock = raw_post(server.port, chat_body(model="slow"))
    assert wait_for(lambda: server.stats.snapshot().active == 2)
    sock.close()
    assert wait_for(lambda: server.stats.snapshot().active == 1)
    first.join(10)
    assert results == [200]
    assert len(engine.requests) == 1


def test_a_failure_mid_stream_arrives_as_an_error_event(server: ApiServer) -> None:
    class Failing(RecordingEngine):
        def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            for event in super().generate(*args, **kwargs):
                if isinstance(event, Done):
                    stats = replace(event.stats, stop_reason="error")
                    event = Done(event.request_id, event.text, stats, "the worker died")
                yield event

    failing = Failing("one two")
    failing.load()
    server.pool.register("failing", failing)
    status, _, raw = request(server.port, "POST", "/v1/chat/completions",
                             chat_body(True, model="failing"))
    assert status == 200
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    errors = [json.loads(e)["error"] for e in events[:-1] if "error" in json.loads(e)]
    assert errors and errors[0]["message"] == "the worker died"
    status, _, body = request(server.port, "POST", "/v1/chat/completions",
                              chat_body(model="failing"))
    assert status == 500 and body["error"]["message"] == "the worker died"


BAD_BODIES = [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 9.0}, "temperature"),
    ({"n": 99}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": [1, 2]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, None),
]


@pytest.mark.parametrize(("fields", "param"), BAD_BODIES)
def test_bad_fields_answer_400(
    server: ApiServer, fields: dict[str, Any], param: str | None
) -> None:
    status, _, body = request(server.port, "POST", "/v1/chat/completions",
                              {**chat_body(model="fast"), **fields})
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert body["error"]["param"] == param


def test_bad_bodies_and_routes(server: ApiServer) -> None:
    port = server.port
    assert request(port, "POST", "/v1/chat/completions", b"[1, 2]")[0] == 400
    assert request(port, "POST", "/v1/chat/completions", b"\xff\xfe")[0] == 400
    assert request(port, "POST", "/v1/completions", {"prompt": ""})[0] == 400
    assert request(port, "GET", "/v1/nothing")[0] == 404
    assert request(port, "GET", "/v1/chat/completions")[0] == 405
    assert request(port, "GET", "/v1/models/nope")[0] == 404
    assert request(port, "GET", "/health")[2] == {"status": "ok"}
    # no /v1 prefix works too, as with llama-server
    assert request(port, "POST", "/chat/completions", chat_body(model="fast"))[0] == 200


def test_missing_length_and_chunked_uploads_answer_411(server: ApiServer) -> None:
    for head in (b"", b"Transfer-Encoding: chunked\r\n", b"Content-Length: -5\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head
                         + b"\r\n")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 411"), answer


def test_max_tokens_is_clamped_to_the_limit(server: ApiServer) -> None:
    status, headers, body = request(server.port, "POST", "/v1/chat/completions",
                                    chat_body(model="slow", max_tokens=100_000))
    assert status == 200
    assert headers["x-lmdesk-max-tokens-clamped"] == "1"
    assert body["usage"]["completion_tokens"] == 50
    assert body["choices"][0]["finish_reason"] == "length"


def test_neutral_values_of_fields_are_accepted(server: ApiServer) -> None:
    fields = {"n": 1, "presence_penalty": 0, "frequency_penalty": 0.0, "user": "me",
              "max_completion_tokens": 3, "stream_options": {"include_usage": True},
              "messages": [{"role": "developer", "content": [{"type": "text", "text": "Be"}]},
                           {"role": "user", "content": "hi", "name": "bob"}]}
    status, _, body = request(server.port, "POST", "/v1/chat/completions",
                              {**chat_body(model="fast"), **fields})
    assert status == 200, body
    assert body["usage"]["completion_tokens"] == 3


def test_browser_origins_and_foreign_hosts_are_refused(server: ApiServer) -> None:
    status, _, body = request(server.port, "GET", "/v1/models",
                              headers={"Origin": "https://evil.example"})
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    status, _, body = request(server.port, "GET", "/v1/models",
                              headers={"Host": "evil.example:8765"})
    assert status == 403 and body["error"]["code"] == "host_not_allowed"
    assert request(server.port, "GET", "/v1/models", headers={"Host": "localhost:1"})[0] == 200


def test_an_allowed_origin_gets_cors_headers() -> None:
    pool = EnginePool()
    pool.register("fast", RecordingEngine("hi"))
    limits = ServerLimits(cors_origins=("app://obsidian.md",))
    with ApiServer(pool, "127.0.0.1", 0, limits=limits) as api:
        origin = {"Origin": "app://obsidian.md"}
        status, headers, _ = request(api.port, "OPTIONS", "/v1/chat/completions", headers=origin)
        assert status == 204
        assert "authorization" in headers["access-control-allow-headers"].lower()
        status, headers, _ = request(api.port, "GET", "/v1/models", headers=origin)
        assert status == 200 and headers["access-control-allow-origin"] == "app://obsidian.md"


def test_binding_beyond_loopback_needs_expose_and_a_key() -> None:
    pool = EnginePool()
    with pytest.raises(UnsafeBind, match="--expose"):
        ApiServer(pool, "0.0.0.0", 0)
    with pytest.raises(UnsafeBind, match="API key"):
        ApiServer(pool, "0.0.0.0", 0, expose=True)
    assert ApiServer(pool, "0.0.0.0", 0, "k", expose=True).exposed  # not started
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert not ApiServer(pool, host, 0).exposed


def test_stop_cancels_replies_in_flight(server: ApiServer, engine: RecordingEngine) -> None:
    results: list[int] = []
    thread = _stream_in_thread(server.port, "slow", results)
    assert engine.started.wait(5)
    server.stop()
    assert wait_for(lambda: len(engine.dones) == 1)
    assert engine.dones[0].stats.stop_reason == "cancelled"
    thread.join(5)
    assert results == [200]


def test_keep_alive_connection_survives_an_error(server: ApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for body, expected in ((b"{oops", 400), (json.dumps(chat_body(model="fast")), 200)):
            conn.request("POST", "/v1/chat/completions", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
        first_sock = conn.sock
        conn.request("GET", "/v1/models")
        conn.getresponse().read()
        assert conn.sock is first_sock
    finally:
        conn.close()


def test_a_client_hanging_up_after_its_reply_never_cancels_the_next_one() -> None:
    shared = slow_engine(n_tokens=15, delay_s=0.002)
    pool = EnginePool()
    pool.register("shared", shared)
    with ApiServer(pool, "127.0.0.1", 0) as api:
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
            conn.request("POST", "/v1/chat/completions",
                         json.dumps(chat_body(True, model="shared")),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            while b"[DONE]" not in resp.readline():
                pass
            conn.close()  # at once, while the server still finishes the request
            events = list(shared.generate([], SamplingParams()))  # the app's next reply
            last = events[-1]
            assert isinstance(last, Done) and last.stats.stop_reason == "stop"
    assert shared.cancels == 0


def test_the_canceller_only_cancels_while_its_reply_runs() -> None:
    engine = RecordingEngine("x")
    canceller = Canceller(engine)
    canceller()
    assert engine.cancels == 0 and canceller.wanted
    canceller.active(True)
    canceller()
    assert engine.cancels == 1
    canceller.active(False)
    canceller()
    assert engine.cancels == 1
