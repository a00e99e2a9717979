"""ApiServer: the OpenAI-compatible HTTP server, embeddable in a background thread.

Standard library only (``http.server.ThreadingHTTPServer``): one thread per connection is
plenty for a server whose models generate one reply at a time, and it keeps the install small.
The threads are bounded: past ``max_connections`` a new connection is answered 503 with
``Retry-After`` at once, and a connection gets ``header_timeout_s`` to send its request line
and headers, so slow or idle clients cannot hold the server.

Safe by default: it binds to loopback; any other address needs ``expose=True`` *and* an API
key. Requests from a browser page (an ``Origin`` header) are refused unless that origin was
allowed, and while it listens on loopback only, a ``Host`` header naming another machine is
refused too (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from http.server import ThreadingHTTPServer
from typing import Any

from tui.engine.protocol import Done
from tui.i18n import _
from tui.serve.jsonhttp import HeaderDeadlines, canned_answer
from tui.serve.pool import EnginePool

log = logging.getLogger("lmdesk.serve")

DEFAULT_PORT = 8765


class UnsafeBind(ValueError):
    """A bind address or key setting that would expose the models carelessly."""


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 1 << 20
    """Larger request bodies are refused with 413."""
    max_tokens_limit: int = 4096
    """A request's max_tokens is clamped to this."""
    default_max_tokens: int = 1024
    """max_tokens when a request gives none."""
    idle_timeout_s: float = 60.0
    """A connection that sends nothing (or reads nothing) for this long is closed."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (e.g. "app://obsidian.md"); "*" for any."""
    max_connections: int = 64
    """Open connections at once; one more is answered 503 with Retry-After."""
    header_timeout_s: float = 10.0
    """A request's line and headers must arrive within this (slow clients hold no thread)."""
    listen_backlog: int = 128
    """Connections the kernel queues before the server accepts them."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, expose: bool, api_key: str | None) -> None:
    """Refuse an address other than loopback unless exposing is explicit and a key is set."""
    if is_loopback(host):
        return
    if not expose:
        raise UnsafeBind(_(
            "refusing to listen on {host}: that lets other machines use your models. "
            "Pass --expose (and --api-key) if that is what you want, or keep 127.0.0.1",
            host=host))
    if not api_key:
        raise UnsafeBind(_(
            "listening on {host} needs an API key: pass --api-key KEY "
            "(or set LMDESK_API_KEY) so only clients that know it get in", host=host))


@dataclass
class ServerSnapshot:
    """What the app's monitor shows about the API (a copy of the counters: ``ServerStats``
    keeps one of these up to date under its lock and hands out copies)."""

    requests: int = 0
    """HTTP requests answered (any status)."""
    replies: int = 0
    """Generations finished (including cancelled ones)."""
    rejected: int = 0
    """Requests refused because a model's queue was full (429)."""
    errors: int = 0
    """Answers with a 4xx/5xx status."""
    failed: int = 0
    """Generations that ended in an error (streamed ones included, whose status was 200)."""
    cancelled: int = 0
    """Generations stopped because the client went away (or the server stopped)."""
    active: int = 0
    """Requests generating or queued now."""
    tokens_generated: int = 0
    last_tokens_per_s: float = 0.0
    last_ttft_s: float = 0.0
    last_model: str | None = None
    last_reply_at: float | None = None
    """``time.time()`` of the last finished reply."""
    refused: int = 0
    """Connections answered 503 because the server had ``max_connections`` open."""


@dataclass
class ModelFigures:
    """One model's running totals, for ``/metrics`` (llama-server's names) and ``/slots``."""

    prompt_tokens: int = 0
    """Prompt tokens evaluated (those reused from the KV cache not counted)."""
    prompt_cached: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    replies: int = 0
    last_prompt_tokens_per_s: float = 0.0
    last_generation_tokens_per_s: float = 0.0
    kv_tokens: int = 0
    """Tokens the KV cache holds after the last reply (its prompt and answer)."""
    n_tokens_max: int = 0


class ServerStats:
    """Counters updated by the request threads; ``snapshot()`` is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = ServerSnapshot()
        self._models: dict[str, ModelFigures] = {}
        self.started_at = time.time()

    def answered(self, status: int) -> None:
        with self._lock:
            self._c.requests += 1
            if status == 429:
                self._c.rejected += 1
            if status >= 400:
                self._c.errors += 1

    def refused_connection(self) -> None:
        with self._lock:
            self._c.refused += 1

    def started(self) -> None:
        with self._lock:
            self._c.active += 1

    def ended(self) -> None:
        with self._lock:
            self._c.active -= 1

    def reply(self, model: str, done: Done, client_gone: bool) -> None:
        """One generation finished (a request with ``n`` > 1 makes several)."""
        s = done.stats
        with self._lock:
            c = self._c
            c.replies += 1
            c.tokens_generated += s.generated_tokens
            if s.stop_reason == "cancelled" or client_gone:
                c.cancelled += 1
            figures = self._models.setdefault(model, ModelFigures())
            figures.replies += 1
            figures.prompt_tokens += s.evaluated_prompt_tokens
            figures.prompt_cached += s.reused_tokens
            if s.prompt_tokens_per_s > 0:
                figures.prompt_seconds += s.evaluated_prompt_tokens / s.prompt_tokens_per_s
                figures.last_prompt_tokens_per_s = s.prompt_tokens_per_s
            figures.generated_tokens += s.generated_tokens
            if s.generation_tokens_per_s > 0:
                figures.generation_seconds += s.generated_tokens / s.generation_tokens_per_s
            figures.kv_tokens = s.prompt_tokens + s.generated_tokens
            figures.n_tokens_max = max(figures.n_tokens_max, figures.kv_tokens)
            if s.stop_reason == "error":
                c.failed += 1
            elif s.generated_tokens:
                figures.last_generation_tokens_per_s = s.generation_tokens_per_s
                c.last_tokens_per_s = s.generation_tokens_per_s
                c.last_ttft_s = s.time_to_first_token_s
                c.last_model = model
                c.last_reply_at = time.time()

    def snapshot(self) -> ServerSnapshot:
        with self._lock:
            return replace(self._c)

    def model_figures(self) -> dict[str, ModelFigures]:
        with self._lock:
            return {name: replace(f) for name, f in self._models.items()}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: ApiServer) -> None:
        from tui.serve.handlers import ApiHandler

        self.api = api
        self.request_queue_size = api.limits.listen_backlog
        self.header_deadlines = HeaderDeadlines(api.limits.header_timeout_s)
        self.connections = 0
        self._connections_lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
        super().__init__((api.host.strip("[]"), api.port), ApiHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            full = self.connections >= self.api.limits.max_connections
            if not full:
                self.connections += 1
        if full:
            self.api.stats.refused_connection()
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._connections_lock:
            self.connections -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # that client's connection is over; nothing to report
        log.error("connection from %s ended by %r", client_address[0] if client_address
                  else "?", exc)


BUSY_503 = canned_answer(
    "503 Service Unavailable", "the server has as many connections open as it takes; retry",
    "server_busy", "Retry-After: 1\r\n",
)


def _refuse(sock: socket.socket) -> None:
    """Answer 503 without a thread: written at once, whatever the client sent read and
    dropped (so the answer is not lost to a reset), never waiting on the client."""
    with contextlib.suppress(OSError):
        sock.send(BUSY_503, socket.MSG_DONTWAIT)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16, socket.MSG_DONTWAIT):
            pass


class ApiServer:
    """The HTTP API over an ``EnginePool``. ``start()`` serves from a daemon thread.

    ``port=0`` picks a free port (read ``.port`` after ``start()``). ``stop()`` cancels the
    generations in flight and closes the socket; the pool is left to its owner.
    """

    def __init__(
        self,
        pool: EnginePool,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        *,
        expose: bool = False,
        limits: ServerLimits | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        check_bind(host, expose, api_key)
        self.pool = pool
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.exposed = not is_loopback(host)
        self.limits = limits or ServerLimits()
        self.log = log
        self.stats = ServerStats()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._cancels: set[Callable[[], None]] = set()
        self._cancels_lock = threading.Lock()
        self._ignored_seen: set[tuple[str, str]] = set()
        self._sweeper: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ApiServer:
        """Bind and serve in a background thread; raises ``OSError`` if the port is taken."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"lmdesk-api-{self.port}", daemon=True,
        )
        self._thread.start()
        self._stopped.clear()
        httpd = self._httpd
        self._sweeper = threading.Thread(target=self._sweep, args=(httpd,), daemon=True,
                                         name=f"lmdesk-api-headers-{self.port}")
        self._sweeper.start()
        return self

    def _sweep(self, httpd: _HTTPServer) -> None:
        while not self._stopped.wait(0.25):
            httpd.header_deadlines.sweep()

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` (from another thread or a signal)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopped.set()
        with self._cancels_lock:
            cancels = list(self._cancels)
        for cancel in cancels:
            cancel()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for the handlers ----------------------------------------------------------------

    def note_ignored(self, route: str, names: Iterable[str]) -> None:
        """Log, once per route and field, the fields clients send that are ignored."""
        with self._cancels_lock:
            new = [n for n in names if (route, n) not in self._ignored_seen]
            self._ignored_seen.update((route, n) for n in new)
        if new:
            line = _("lmdesk serve: {route} ignores {fields} (no meaning here; named in each "
                     "answer's x-lmdesk-ignored header)", route=route, fields=", ".join(new))
            if self.log is not None:
                self.log(line)
            else:
                log.info(line)

    def track(self, cancel: Callable[[], None], active: bool) -> None:
        """Remember (or forget) how to stop an in-flight generation when the server stops."""
        with self._cancels_lock:
            if active:
                self._cancels.add(cancel)
            else:
                self._cancels.discard(cancel)
