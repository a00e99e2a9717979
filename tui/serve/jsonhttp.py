"""A JSON-over-HTTP/1.1 request handler: answers, errors, bounded bodies, chunked events.

The API's routes live in ``tui.serve.handlers``; this is the plumbing under them.
"""

from __future__ import annotations

import contextlib
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from tui.serve import schema
from tui.serve.schema import ApiError, bad

if TYPE_CHECKING:
    from tui.serve.server import ApiServer, _HTTPServer

DRAIN_LIMIT = 64 << 20
"""An unread body up to this size is read and dropped after an early error, so the client
receives the answer instead of a reset connection."""


class JsonHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "lmdesk"
    disable_nagle_algorithm = True  # one small write per token must leave at once
    _status = 0
    _headers_done = False
    _body_pending = False

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.api.limits.idle_timeout_s)

    def _cors_headers(self) -> None:
        headers = getattr(self, "headers", None)  # absent when the request line was bad
        origin = headers.get("Origin") if headers is not None else None
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self._cors_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._headers_done = True

    def _answer(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        all_headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        self._start(status, {**all_headers, **(headers or {})})
        self.wfile.write(data)

    def _answer_error(self, exc: ApiError) -> None:
        if self._headers_done:  # mid-stream: nothing sensible left to send
            self.close_connection = True
            return
        if self._body_pending:
            self.close_connection = True
        with contextlib.suppress(OSError):
            self._answer(exc.status, exc.body(), exc.headers)
            if self._body_pending:
                self._drain()

    def _drain(self) -> None:
        """Read and drop the unread body (bounded in size and time) before closing."""
        try:
            left = min(int(self.headers.get("Content-Length") or 0), DRAIN_LIMIT)
        except ValueError:
            return
        deadline = time.monotonic() + 5
        while left > 0 and time.monotonic() < deadline:
            data = self.rfile.read1(min(left, 1 << 16))
            if not data:
                return
            left -= len(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by http.server itself (bad request line, huge headers) in our shape."""
        self.close_connection = True
        self._status = code
        self._headers_done = False
        self._body_pending = False
        with contextlib.suppress(OSError):
            body = schema.error_body(message or explain or "bad request", "invalid_request_error")
            self._answer(code, body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged once each in _dispatch, through ApiServer.log

    def _read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._body_pending = False
            raise ApiError(
                411, "send the body with a Content-Length header", code="length_required"
            )
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            self._body_pending = False
            self.close_connection = True
            raise ApiError(
                411, "a Content-Length header is required", code="length_required"
            ) from None
        limit = self.api.limits.max_body_bytes
        if length > limit:
            raise ApiError(
                413, f"the request body is {length:,} bytes; the limit is {limit:,}",
                code="body_too_large",
            )
        raw = self.rfile.read(length)
        self._body_pending = False
        if len(raw) < length:
            self.close_connection = True
            raise bad("the request body ended before its Content-Length")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise bad(f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad("the body must be a JSON object", code="invalid_json")
        return body

    def _event(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._write_chunk(b"data: " + data + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (an empty one ends the body) in a single write."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
