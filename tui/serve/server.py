"""ApiServer: the OpenAI-compatible HTTP server, embeddable in a background thread.

Standard library only (``http.server.ThreadingHTTPServer``): one thread per connection is
plenty for a server whose models generate one reply at a time, and it keeps the install small.

Safe by default: it binds to loopback; any other address needs ``expose=True`` *and* an API
key. Requests from a browser page (an ``Origin`` header) are refused unless that origin was
allowed, and while it listens on loopback only, a ``Host`` header naming another machine is
refused too (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from tui.engine.protocol import Done
from tui.serve.pool import EnginePool

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
        raise UnsafeBind(
            f"refusing to listen on {host}: that lets other machines use your models. "
            "Pass --expose (and --api-key) if that is what you want, or keep 127.0.0.1"
        )
    if not api_key:
        raise UnsafeBind(
            f"listening on {host} needs an API key: pass --api-key KEY "
            "(or set LMDESK_API_KEY) so only clients that know it get in"
        )


@dataclass(frozen=True)
class ServerSnapshot:
    """What the app's monitor shows about the API."""

    requests: int
    """HTTP requests answered (any status)."""
    replies: int
    """Generations finished (including cancelled ones)."""
    rejected: int
    """Requests refused because a model's queue was full (429)."""
    errors: int
    """Answers with a 4xx/5xx status."""
    failed: int
    """Generations that ended in an error (streamed ones included, whose status was 200)."""
    cancelled: int
    """Generations stopped because the client went away (or the server stopped)."""
    active: int
    """Generations running or queued now."""
    tokens_generated: int
    last_tokens_per_s: float
    last_ttft_s: float
    last_model: str | None
    last_reply_at: float | None
    """``time.time()`` of the last finished reply."""


class ServerStats:
    """Counters updated by the request threads; ``snapshot()`` is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, Any] = {
            "requests": 0, "replies": 0, "rejected": 0, "errors": 0, "failed": 0, "cancelled": 0,
            "active": 0, "tokens_generated": 0, "last_tokens_per_s": 0.0,
            "last_ttft_s": 0.0, "last_model": None, "last_reply_at": None,
        }

    def answered(self, status: int) -> None:
        with self._lock:
            self._c["requests"] += 1
            if status == 429:
                self._c["rejected"] += 1
            if status >= 400:
                self._c["errors"] += 1

    def started(self) -> None:
        with self._lock:
            self._c["active"] += 1

    def finished(self, model: str, done: Done | None, client_gone: bool) -> None:
        with self._lock:
            self._c["active"] -= 1
            if done is None:
                return
            self._c["replies"] += 1
            self._c["tokens_generated"] += done.stats.generated_tokens
            if done.stats.stop_reason == "cancelled" or client_gone:
                self._c["cancelled"] += 1
            if done.stats.stop_reason == "error":
                self._c["failed"] += 1
            elif done.stats.generated_tokens:
                self._c["last_tokens_per_s"] = done.stats.generation_tokens_per_s
                self._c["last_ttft_s"] = done.stats.time_to_first_token_s
                self._c["last_model"] = model
                self._c["last_reply_at"] = time.time()

    def snapshot(self) -> ServerSnapshot:
        with self._lock:
            return ServerSnapshot(**self._c)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: ApiServer) -> None:
        from tui.serve.handlers import ApiHandler

        self.api = api
        self.address_family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
        super().__init__((api.host.strip("[]"), api.port), ApiHandler)


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
        return self

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

    def track(self, cancel: Callable[[], None], active: bool) -> None:
        """Remember (or forget) how to stop an in-flight generation when the server stops."""
        with self._cancels_lock:
            if active:
                self._cancels.add(cancel)
            else:
                self._cancels.discard(cancel)
