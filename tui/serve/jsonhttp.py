"""A JSON-over-HTTP/1.1 request handler: answers, errors, bounded bodies, chunked events.

The API's routes live in ``tui.serve.handlers``; this is the plumbing under them, and what
keeps one client from holding the server: the request line and headers must arrive within
``header_timeout_s`` (``HeaderDeadlines`` closes a connection that dawdles), an unread body
is drained only so far and so long, an HTTP/0.9 request line is answered at once, and a
client that resets its connection costs that connection alone (no traceback in the log).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from tui.i18n import _
from tui.serve.schema import ApiError, Frame, bad, error_body, frames_bytes

if TYPE_CHECKING:
    from tui.serve.server import ApiServer, _HTTPServer

DRAIN_BYTES = 64 << 20
"""An unread body up to this size is read and dropped after an early answer (so the client
receives it instead of a reset connection); a larger one closes the connection."""
DRAIN_SECONDS = 3.0



def canned_answer(status: str, message: str, code: str, extra: str = "") -> bytes:
    """A whole error answer, written straight to a socket that no handler serves."""
    body = json.dumps(error_body(message, "invalid_request_error" if status.startswith("4")
                                 else "server_error", None, code)).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


TIMEOUT_408 = canned_answer("408 Request Timeout",
                            "the request line and headers took too long to arrive",
                            "request_timeout")


class HeaderDeadlines:
    """Connections still sending their request line and headers, and when each must be done.

    ``sweep()`` (from one thread of the server) answers 408 to and shuts down the ones past
    their deadline; the handler's blocked read then ends and it closes the connection.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()

    def start(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines[sock] = time.monotonic() + self.timeout_s

    def stop(self, sock: socket.socket) -> bool:
        """Headers are in (or the request is over); True when the deadline had passed."""
        with self._lock:
            self._deadlines.pop(sock, None)
            if sock in self._expired:
                self._expired.discard(sock)
                return True
            return False

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [s for s, deadline in self._deadlines.items() if deadline < now]
            for sock in late:
                del self._deadlines[sock]
                self._expired.add(sock)
        for sock in late:
            with contextlib.suppress(OSError):
                sock.send(TIMEOUT_408, socket.MSG_DONTWAIT)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class JsonHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "lmdesk"
    disable_nagle_algorithm = True  # one small write per token must leave at once
    _status = 0
    _headers_done = False
    _body_pending = False
    _request_headers: dict[str, str] = {}  # noqa: RUF012 (replaced per request, never mutated)
    """Headers every answer to this request carries (``x-lmdesk-ignored``)."""
    error_shape: Callable[[ApiError], dict[str, Any]] = staticmethod(ApiError.body)  # type: ignore[assignment]
    """How this request's errors are written (the Anthropic endpoint has its own shape)."""

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.api.limits.idle_timeout_s)

    def handle(self) -> None:
        # a client that reset or went silent: its connection ends, nothing to log
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def handle_one_request(self) -> None:
        # an idle keep-alive connection may wait for its next request (idle_timeout_s); once
        # a request starts, its line and headers get header_timeout_s in all
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True
                return
        except (OSError, ValueError):
            self.close_connection = True
            return
        deadlines = self.server.header_deadlines
        deadlines.start(self.connection)
        try:
            super().handle_one_request()
        finally:
            deadlines.stop(self.connection)

    def parse_request(self) -> bool:
        line: bytes = self.raw_requestline  # type: ignore[attr-defined]
        if len(line.split()) == 2:  # "GET /path": HTTP/0.9, no headers follow
            self.command, self.request_version = None, "HTTP/0.9"  # type: ignore[assignment]
            self.requestline = str(line, "iso-8859-1").rstrip("\r\n")
            self.send_error(400, "HTTP/0.9 requests are not served: send an HTTP/1.x request")
            return False
        ok = super().parse_request()
        if self.server.header_deadlines.stop(self.connection):
            self.close_connection = True
            return False
        return ok

    def _allowed_origin(self) -> str | None:
        headers = getattr(self, "headers", None)  # absent when the request line was bad
        origin = headers.get("Origin") if headers is not None else None
        if not origin:
            return None
        allowed = self.api.limits.cors_origins
        return origin if origin in allowed or "*" in allowed else None

    def _cors_headers(self) -> None:
        origin = self._allowed_origin()
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Expose-Headers", "x-lmdesk-ignored, Retry-After")
            self.send_header("Vary", "Origin")

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for name, value in {**self._request_headers, **headers}.items():
            self.send_header(name, value)
        self._cors_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._headers_done = True

    def _answer(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self._answer_bytes(status, data, "application/json", headers)

    def _answer_bytes(self, status: int, data: bytes, content_type: str,
                      headers: dict[str, str] | None = None) -> None:
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
        self._start(status, {**all_headers, **(headers or {})})
        self.wfile.write(data)

    def _answer_error(self, exc: ApiError) -> None:
        if self._headers_done:  # mid-stream: nothing sensible left to send
            self.close_connection = True
            return
        if self._body_pending:
            self.close_connection = True
        with contextlib.suppress(OSError):
            self._answer(exc.status, self.error_shape(exc), exc.headers)
            if self._body_pending:
                self._drain()

    def _body_length(self) -> int | None:
        """The declared body length; None for a chunked body (or a bad length)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _has_body(self) -> bool:
        if self.headers.get("Transfer-Encoding"):
            return True
        return self._body_length() != 0

    def _drain(self) -> bool:
        """Read and drop the unread body, at most DRAIN_BYTES for at most DRAIN_SECONDS; True
        when all of it was read (the connection can serve the next request)."""
        self._body_pending = False
        left = self._body_length()
        if left is None or left > DRAIN_BYTES:
            self.close_connection = True
            return False
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                data = self.rfile.read1(min(left, 1 << 16))
                if not data:
                    raise ConnectionError
                left -= len(data)
        except (OSError, ValueError):
            self.close_connection = True
            return False
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.api.limits.idle_timeout_s)
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by http.server itself (bad request line, huge headers) in our shape."""
        self.close_connection = True
        if getattr(self, "request_version", "") == "HTTP/0.9":
            # http.server writes no status line or headers to a line without a version: a
            # bare error body would read as a success to whatever sent that line by mistake
            self.request_version = self.protocol_version
        self._status = code
        self._headers_done = False
        self._body_pending = False
        with contextlib.suppress(OSError):
            body = error_body(message or explain or "bad request", "invalid_request_error")
            self._answer(code, body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged once each in _dispatch, through ApiServer.log

    def _read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._body_pending = False
            raise ApiError(
                411, _("send the body with a Content-Length header"), code="length_required"
            )
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            self._body_pending = False
            self.close_connection = True
            raise ApiError(
                411, _("a Content-Length header is required"), code="length_required"
            ) from None
        limit = self.api.limits.max_body_bytes
        if length > limit:
            raise ApiError(
                413, _("the request body is {length:,} bytes; the limit is {limit:,}",
                       length=length, limit=limit),
                code="body_too_large",
            )
        raw = self.rfile.read(length)
        self._body_pending = False
        if len(raw) < length:
            self.close_connection = True
            raise bad(_("the request body ended before its Content-Length"))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise bad(_("the body is not valid JSON: {exc}", exc=exc),
                      code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad(_("the body must be a JSON object"), code="invalid_json")
        return body

    def _open_events(self, headers: dict[str, str]) -> None:
        self._start(200, {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            "X-Accel-Buffering": "no",
            **headers,
        })

    def _send_frames(self, frames: list[Frame]) -> None:
        if frames:
            self._write_chunk(frames_bytes(frames))

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (an empty one ends the body) in a single write."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
