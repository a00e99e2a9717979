"""Noticing that an HTTP client went away while its request waits or generates."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable

from tui.engine.base import Engine


class ClientWatch:
    """Polls a client socket from a helper thread; ``gone`` is set once the client closes it.

    A client that closes its connection makes the socket readable with nothing to read (EOF),
    which a peek sees without consuming anything. ``on_gone`` (if set) is called once, from the
    helper thread, when that happens.
    """

    def __init__(self, sock: socket.socket, *, interval_s: float = 0.1) -> None:
        self._sock = sock
        self._interval_s = interval_s
        self.gone = threading.Event()
        self.on_gone: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmdesk-api-watch", daemon=True)

    def __enter__(self) -> ClientWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def mark_gone(self) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        callback = self.on_gone
        if callback is not None:
            with contextlib.suppress(Exception):
                callback()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._sock], [], [], self._interval_s)
            except (OSError, ValueError):  # the socket was closed under us
                self.mark_gone()
                return
            if not readable:
                continue
            try:
                data = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self.mark_gone()
                return
            if not data:
                self.mark_gone()
                return
            # the client already sent its next request (pipelining): it is still there
            self._stop.wait(self._interval_s)


class Canceller:
    """Cancels one request's generation, and nothing else.

    An engine's ``cancel()`` stops whatever it is generating now; a client that hangs up just
    after its reply must not stop the next reply (the app's own, on a shared engine). So this
    forwards only between the request's first event and its ``Done``, while the engine is
    certainly busy with it; before and after, it does nothing (the request's own thread checks
    ``gone`` at every event instead).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._active = False
        self._lock = threading.Lock()
        self.wanted = False
        """A cancel was asked for (the request's thread repeats it at its next event)."""

    def __call__(self) -> None:
        with self._lock:
            self.wanted = True
            if self._active:
                self._engine.cancel()

    def active(self, on: bool) -> None:
        with self._lock:  # waits for a cancel in progress: none can follow ``active(False)``
            self._active = on
