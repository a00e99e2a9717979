"""Issue 22's serving items: a fair, bounded server (FIFO per model, a backlog, a bound on
connections and on the time to send headers, 503 when full), the HTTP details (CORS, a GET's
body, the drain after a 413, resets, HTTP/0.9), a worker killed mid-stream, and text that is
not Unicode. Each test is bounded in count and time; none measures speed."""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve_helpers import RecordingEngine, request, slow_engine, wait_for
from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams
from tui.serve import ApiServer, EnginePool, ServerLimits


@pytest.fixture
def engine() -> RecordingEngine:
    return slow_engine(n_tokens=6, delay_s=0.01)


def _server(engine: RecordingEngine, **limits: Any) -> ApiServer:
    pool = EnginePool(queue_depth=32)
    pool.register("slow", engine)
    return ApiServer(pool, "127.0.0.1", 0, limits=ServerLimits(**limits)).start()


@pytest.fixture
def server(engine: RecordingEngine) -> Iterator[ApiServer]:
    api = _server(engine)
    yield api
    api.stop()


def _stream(port: int, body: dict[str, Any], results: dict[int, tuple[int, str]], key: int
            ) -> threading.Thread:
    def run() -> None:
        status, _, raw = request(port, "POST", "/v1/chat/completions", body)
        results[key] = (status, raw.decode() if isinstance(raw, bytes) else json.dumps(raw))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sixteen_streaming_clients_are_served_first_come_first_served(
        server: ApiServer, engine: RecordingEngine) -> None:
    results: dict[int, tuple[int, str]] = {}
    threads = []
    for i in range(16):  # each one queued before the next arrives: the arrival order is known
        body = {"messages": [{"role": "user", "content": f"client {i}"}], "stream": True}
        threads.append(_stream(server.port, body, results, i))
        assert wait_for(lambda n=i: server.stats.snapshot().active == n + 1
                        or len(engine.requests) > n, 10)
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(16))
    assert all(status == 200 and "[DONE]" in raw for status, raw in results.values())
    served = [r[-1].content for r in engine.requests]
    assert served == [f"client {i}" for i in range(16)]


def test_a_burst_of_connections_fits_the_listen_backlog(engine: RecordingEngine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    api = _server(engine)
    assert api._httpd is not None
    hold = threading.Event()
    original = api._httpd.process_request

    def stalled(request: Any, address: Any) -> None:
        hold.wait(10)  # the accept loop stops here: new connections wait in the backlog
        original(request, address)

    monkeypatch.setattr(api._httpd, "process_request", stalled)
    socks = []
    try:
        for _ in range(40):  # a full backlog drops the SYN: connect would take 1 s or more
            socks.append(socket.create_connection(("127.0.0.1", api.port), timeout=0.8))
        hold.set()
        socks[-1].sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        socks[-1].settimeout(10)
        assert socks[-1].recv(100).startswith(b"HTTP/1.1 200")
    finally:
        hold.set()
        for s in socks:
            s.close()
        api.stop()


def test_past_max_connections_a_new_one_gets_503_with_retry_after(
        engine: RecordingEngine) -> None:
    api = _server(engine, max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", api.port), timeout=5) for _ in range(3)]
    try:
        assert api._httpd is not None
        assert wait_for(lambda: api._httpd is not None and api._httpd.connections == 3)
        status, headers, body = request(api.port, "GET", "/v1/models")
        assert status == 503 and headers["retry-after"] == "1"
        assert body["error"]["code"] == "server_busy"
        assert api.stats.snapshot().refused == 1
        idle.pop().close()
        assert wait_for(lambda: api._httpd is not None and api._httpd.connections == 2)
        assert request(api.port, "GET", "/v1/models")[0] == 200
    finally:
        for s in idle:
            s.close()
        api.stop()


def test_headers_sent_too_slowly_are_cut_off(engine: RecordingEngine) -> None:
    api = _server(engine, header_timeout_s=0.5)
    try:
        answer = b""
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\n")
            sock.settimeout(0.1)
            for _ in range(100):  # a header byte every 0.1 s: 10 s if nothing cut it off
                try:
                    sock.sendall(b"X")
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert api._httpd is not None and wait_for(lambda: api._httpd.connections == 0)
        assert request(api.port, "GET", "/v1/models")[0] == 200
    finally:
        api.stop()


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """What the server sends before it closes, and whether it closed within ``limit_s``."""
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    return data, True


def test_a_get_body_is_not_read_as_a_second_request(server: ApiServer) -> None:
    smuggled = b"GET /v1/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                     + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data, _ = _read_until_closed(sock, 8)
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", data)
    assert statuses == [b"200", b"200"], data


def test_after_a_413_the_unsent_body_is_not_waited_for(server: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 50000000\r\nContent-Type: application/json\r\n\r\n"
                     + b"{" * 100)  # then nothing more: a client that stalls
        data, closed = _read_until_closed(sock, 20)
    assert data.startswith(b"HTTP/1.1 413")
    assert closed, "the server kept waiting for a body it had refused"


def test_a_keep_alive_client_reset_logs_no_traceback(server: ApiServer,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.close()  # an RST while the server waits for the next request
    time.sleep(0.5)
    assert request(server.port, "GET", "/v1/models")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


def test_a_refused_origin_is_not_echoed(server: ApiServer) -> None:
    status, headers, _ = request(server.port, "GET", "/v1/models",
                                 headers={"Origin": "https://evil.example"})
    assert status == 403
    assert "access-control-allow-origin" not in headers


def test_a_lone_surrogate_is_a_400_that_never_holds_the_prompt(smollm_engine: LocalEngine
                                                                ) -> None:
    pool = EnginePool()
    pool.register("smollm", smollm_engine)
    secret = "CONFIDENTIAL-PLAN " * 50
    raw = json.dumps({"messages": [{"role": "user", "content": secret + "\ud800 end"}],
                      "max_tokens": 4}).encode()
    assert b"\\ud800" in raw
    with ApiServer(pool, "127.0.0.1", 0) as api:
        for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
            body = raw if path != "/v1/responses" else json.dumps(
                {"input": secret + "\ud800", "max_output_tokens": 4}).encode()
            status, _, answer = request(api.port, "POST", path, body)
            assert status == 400, answer
            assert "CONFIDENTIAL" not in json.dumps(answer)
        status, _, answer = request(api.port, "POST", "/v1/chat/completions", raw)
        assert answer["error"]["param"] == "messages[0].content"
        assert answer["error"]["code"] == "invalid_text"


def test_a_worker_killed_mid_stream_ends_with_an_error_finish(smollm: Path) -> None:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512))
    engine.load()
    pool = EnginePool()
    pool.register("victim", engine)
    try:
        with ApiServer(pool, "127.0.0.1", 0) as api:
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
            body = {"messages": [{"role": "user", "content": "Tell a very long story."}],
                    "stream": True, "max_tokens": 400, "temperature": 0, "ignore_eos": True}
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            events: list[Any] = []
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    payload = line[6:].strip()
                    events.append(payload if payload == b"[DONE]" else json.loads(payload))
                    if len(events) == 4:
                        engine.kill()  # a native crash, as far as the server can tell
            conn.close()
    finally:
        engine.unload()
    assert events[-1] == b"[DONE]"
    errors = [e["error"] for e in events[:-1] if "error" in e]
    assert errors and errors[0]["type"] == "server_error" and errors[0]["message"]
    finishes = [c["finish_reason"] for e in events[:-1] if "choices" in e
                for c in e["choices"] if c.get("finish_reason")]
    assert finishes == ["error"]


# --- the HTTP details of issue 22.14 ------------------------------------------------------


def _raw(port: int, data: bytes, limit_s: float = 10) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; what came back before the server closed it, and
    whether it closed cleanly (EOF) within ``limit_s``, rather than resetting or hanging."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(data)
        try:
            return _read_until_closed(sock, limit_s)
        except ConnectionResetError:
            return b"", False


def _head_and_body(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("iso-8859-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status, headers, body


@pytest.mark.parametrize("line", [b"GET /v1/models\r\n", b"POST /v1/chat/completions\r\n",
                                  b"GET\r\n"])
def test_an_http_09_request_line_gets_a_400_status_line(server: ApiServer, line: bytes) -> None:
    answer, closed = _raw(server.port, line, 8)
    assert closed, "the server held an HTTP/0.9 connection open"
    status, headers, body = _head_and_body(answer)
    assert status.startswith("HTTP/1.1 400"), answer  # not a bare body: that reads as success
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert request(server.port, "GET", "/v1/models")[0] == 200


@pytest.mark.parametrize("method", ["OPTIONS", "GET", "POST"])
def test_a_refused_origin_is_not_echoed_beside_an_allowed_one(method: str) -> None:
    pool = EnginePool()
    pool.register("slow", slow_engine(n_tokens=2, delay_s=0))
    limits = ServerLimits(cors_origins=("app://obsidian.md",))
    path = "/v1/models" if method == "GET" else "/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}]} if method == "POST" else None
    with ApiServer(pool, "127.0.0.1", 0, limits=limits) as api:
        status, headers, answer = request(api.port, method, path, body,
                                          headers={"Origin": "https://evil.example"})
        assert status == 403 and answer["error"]["code"] == "origin_not_allowed"
        assert not [h for h in headers if h.startswith("access-control-")], headers
        status, headers, _ = request(api.port, method, path, body,
                                     headers={"Origin": "app://obsidian.md"})
        assert status in (200, 204)
        assert headers["access-control-allow-origin"] == "app://obsidian.md"


def test_a_chunked_get_body_is_not_read_as_a_second_request(server: ApiServer) -> None:
    smuggled = b"GET /v1/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    chunked = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
    answer, closed = _raw(server.port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + chunked
                          + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert closed
    assert re.findall(rb"HTTP/1.1 (\d{3})", answer) == [b"200"], answer  # no 404 smuggled
    assert _head_and_body(answer)[1]["connection"] == "close"  # told, not just cut off


def test_a_413_body_sent_whole_gets_the_answer_and_a_clean_close(server: ApiServer) -> None:
    body = b'{"messages": "' + b"x" * (3 << 20) + b'"}'  # 3 MiB, the limit is 1 MiB
    answer, closed = _raw(server.port, b"POST /v1/chat/completions HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body, 20)
    assert closed, "reset or kept waiting instead of a clean close after a 413"
    status, headers, payload = _head_and_body(answer)
    assert status.startswith("HTTP/1.1 413") and headers["connection"] == "close"
    assert json.loads(payload)["error"]["code"] == "body_too_large"
    assert request(server.port, "GET", "/v1/models")[0] == 200


def test_a_413_for_a_body_past_the_drain_limit_is_closed_at_once(server: ApiServer) -> None:
    answer, closed = _raw(server.port, b"POST /v1/chat/completions HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nContent-Length: 100000000000\r\n\r\n{", 20)
    assert closed and answer.startswith(b"HTTP/1.1 413"), answer


def _reset(port: int, data: bytes, *, read: int = 0, wait_s: float = 0.05) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(data)
    if read:
        sock.recv(read)
    time.sleep(wait_s)
    sock.close()  # an RST


def test_resets_at_every_stage_of_a_request_log_no_traceback(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    pool = EnginePool()
    pool.register("slow", slow_engine(n_tokens=200, delay_s=0.01))
    lines: list[str] = []
    caplog.set_level("DEBUG")
    with ApiServer(pool, "127.0.0.1", 0, log=lines.append) as api:
        port = api.port
        streamed = json.dumps({"messages": [{"role": "user", "content": "x"}],
                               "stream": True}).encode()
        plain = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()

        def post(body: bytes) -> bytes:
            return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode())

        _reset(port, post(streamed) + streamed, read=100, wait_s=0.3)  # mid-stream
        _reset(port, post(plain) + plain, wait_s=0.1)  # while the answer is made
        _reset(port, post(plain)[:-2])  # mid-headers
        _reset(port, post(plain) + plain[:5])  # mid-body
        _reset(port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", read=100)  # idle
        assert wait_for(lambda: api.stats.snapshot().active == 0, 10)
        assert request(port, "GET", "/v1/models")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err
    bad = [r for r in caplog.records if r.levelno >= 30 or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    assert not [line for line in lines if "Traceback" in line or "Error" in line], lines


@pytest.mark.parametrize(("path", "stream"), [
    ("/v1/chat/completions", False), ("/v1/responses", True), ("/v1/messages", True),
])
def test_a_worker_killed_mid_reply_is_an_error_in_each_dialect(
        smollm: Path, path: str, stream: bool) -> None:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512))
    engine.load()
    pool = EnginePool()
    pool.register("victim", engine)
    prompt = "Tell a very long story."
    body: dict[str, Any] = {"stream": stream, "temperature": 0, "ignore_eos": True}
    if path == "/v1/responses":
        body.update(input=prompt, max_output_tokens=400)
    else:
        body.update(messages=[{"role": "user", "content": prompt}], max_tokens=400)
    try:
        with ApiServer(pool, "127.0.0.1", 0) as api:
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            if not stream:  # no events to count: kill it while it generates
                assert wait_for(lambda: api.stats.snapshot().active == 1, 10)
                time.sleep(0.5)
                engine.kill()
                resp = conn.getresponse()
                answer = json.loads(resp.read())
                assert resp.status == 500, answer
                assert answer["error"]["type"] == "server_error" and answer["error"]["message"]
                return
            resp = conn.getresponse()
            assert resp.status == 200
            events: list[tuple[str, Any]] = []
            kind = ""
            while line := resp.readline():
                if line.startswith(b"event: "):
                    kind = line[7:].strip().decode()
                elif line.startswith(b"data: "):
                    events.append((kind, json.loads(line[6:])))
                    if len(events) == 6:
                        engine.kill()
            conn.close()
    finally:
        engine.unload()
    kinds = [k for k, _ in events]
    if path == "/v1/responses":
        assert kinds[-1] == "response.failed", kinds
        final = events[-1][1]["response"]
        assert final["status"] == "failed" and final["error"]["message"]
    else:
        assert kinds[-1] == "error" and "message_stop" not in kinds, kinds
        assert events[-1][1]["error"]["message"]
