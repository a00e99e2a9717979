"""The engines the API serves: named models, loaded on first use, one generation at a time each.

A model enters the pool in one of two ways:

- ``add_model(name, params)``: a GGUF (an installed model or a profile) that the pool loads in a
  ``LocalEngine`` the first time a request names it, and may unload again to make room;
- ``register(name, engine)``: an engine someone else already loaded (the app sharing its model
  while the user chats). The pool never unloads it. Pass the lock the owner holds around its own
  generations so the API and the owner take turns instead of colliding.

Each model has a bounded queue: at most ``queue_depth`` requests wait while one generates; the
next one is refused with ``QueueFull`` (the server answers 429). The queue is first come, first
served: only the request at its head waits on the model's lock (which the app's own replies
take too, when it shares its model), the others wait for their turn behind it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import LoadParams
from tui.i18n import _

EngineFactory = Callable[[LoadParams], Engine]


class PoolError(Exception):
    """A request the pool cannot serve; the message says why."""


class UnknownModel(PoolError):
    pass


class QueueFull(PoolError):
    pass


class ClientGone(PoolError):
    """The client left while its request waited in the queue."""


def _is_embedding_model(path: str) -> bool:
    from tui.engine.gguf import GGUFError, read_header

    try:
        header = read_header(path)
    except GGUFError:
        return False  # the load will say what is wrong with it
    return header.arch_key("pooling_type") is not None or header.architecture in (
        "bert", "nomic-bert", "jina-bert-v2", "t5encoder")


def _local_engine(params: LoadParams) -> Engine:
    from tui.engine.local import LocalEngine

    return LocalEngine(params)


@dataclass
class _Entry:
    name: str
    params: LoadParams | None
    engine: Engine | None
    owned: bool
    lock: threading.Lock
    in_flight: int = 0
    """Requests generating or waiting for this model."""
    last_used: float = field(default_factory=time.monotonic)
    waiting: deque[object] = field(default_factory=deque)
    """The queue's tickets, first come first; the head's holder may take ``lock``."""
    busy: bool = False
    """A lease is held (a request is generating, or the model loading for it)."""
    loading: bool = False
    embedding: bool = False
    """The GGUF is an embedding model (it names a pooling type)."""

    @property
    def loaded(self) -> bool:
        return self.engine is not None and self.engine.alive


@dataclass(frozen=True)
class ModelEntry:
    """What ``/v1/models`` lists."""

    name: str
    loaded: bool
    n_ctx: int
    shared: bool
    """Registered by its owner (the app) rather than loaded by the pool."""
    in_flight: int
    busy: bool = False
    """A request holds the model now."""
    loading: bool = False
    path: str = ""
    """The GGUF file, when the pool loads it."""


@dataclass(frozen=True)
class Lease:
    """The right to use ``engine`` for one request; held until the ``with`` block ends."""

    name: str
    engine: Engine


class EnginePool:
    """Thread-safe. ``lease(name)`` queues for a model, loading it first if needed."""

    def __init__(
        self,
        *,
        queue_depth: int = 8,
        max_loaded: int = 2,
        engine_factory: EngineFactory = _local_engine,
    ) -> None:
        if queue_depth < 0 or max_loaded < 1:
            raise ValueError(_("queue_depth must be >= 0 and max_loaded >= 1"))
        self.queue_depth = queue_depth
        self.max_loaded = max_loaded
        self._factory = engine_factory
        self._entries: dict[str, _Entry] = {}
        self._default: str | None = None
        self._lock = threading.Lock()
        self._turns = threading.Condition(threading.Lock())
        """Notified whenever the head of a model's queue changes."""

    # --- contents ------------------------------------------------------------------------

    def add_model(self, name: str, params: LoadParams, *, default: bool = False) -> None:
        """A model loaded on first use (an installed model, or a profile's load parameters)."""
        params.validate()
        entry = _Entry(name, params, None, True, threading.Lock())
        entry.embedding = _is_embedding_model(params.model_path)
        self._add(entry, default)

    def register(
        self,
        name: str,
        engine: Engine,
        *,
        lock: threading.Lock | None = None,
        default: bool = False,
    ) -> None:
        """An engine loaded by someone else; the pool uses it but never unloads it."""
        self._add(_Entry(name, None, engine, False, lock or threading.Lock()), default)

    def _add(self, entry: _Entry, default: bool) -> None:
        if not entry.name or entry.name != entry.name.strip():
            raise ValueError(_("bad model name {name!r}", name=entry.name))
        with self._lock:
            old = self._entries.get(entry.name.lower())
            if old is not None and old.in_flight:
                raise PoolError(_("model {name!r} is in use; cannot replace it now",
                                  name=entry.name))
            self._entries[entry.name.lower()] = entry
            if default or self._default is None:
                self._default = entry.name.lower()
        if old is not None and old.owned and old.engine is not None:
            old.engine.unload()

    def unregister(self, name: str) -> None:
        """Take a model out of the pool (waiting for a reply in flight to end)."""
        with self._lock:
            entry = self._entries.pop(name.lower(), None)
            if entry is not None and self._default == name.lower():
                self._default = next(iter(self._entries), None)
        if entry is not None and entry.owned and entry.engine is not None:
            with entry.lock:
                entry.engine.unload()

    @property
    def default(self) -> str | None:
        with self._lock:
            entry = self._entries.get(self._default or "")
            return entry.name if entry else None

    def models(self) -> list[ModelEntry]:
        with self._lock:
            entries = list(self._entries.values())
        out = []
        for e in entries:
            info = e.engine.info if e.engine is not None else None
            n_ctx = info.n_ctx if info is not None else (e.params.n_ctx or 0 if e.params else 0)
            out.append(ModelEntry(e.name, e.loaded, n_ctx, not e.owned, e.in_flight, e.busy,
                                  e.loading, e.params.model_path if e.params else ""))
        return out

    def is_embedding_model(self, name: str) -> bool:
        with self._lock:
            entry = self._entries.get(name.lower())
            return entry is not None and entry.embedding

    def embedding_model(self) -> str | None:
        """The model ``/v1/embeddings`` uses when the request names none this server knows:
        an embedding model if one is installed, else the default (mean-pooled)."""
        with self._lock:
            found = next((e.name for e in self._entries.values() if e.embedding), None)
        return found or self.default

    def resolve(self, name: str | None) -> str:
        """The pool's name for ``name``: exact (any case), else a unique prefix; None: default."""
        with self._lock:
            return self._find(name).name

    def _find(self, name: str | None) -> _Entry:
        if not name:
            if self._default is None:
                raise UnknownModel(_("no model is configured on this server"))
            return self._entries[self._default]
        wanted = name.strip().lower()
        if wanted in self._entries:
            return self._entries[wanted]
        matches = [e for key, e in self._entries.items() if key.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(e.name for e in self._entries.values()) or _("none")
        raise UnknownModel(_("no model named {name!r} on this server (available: {names})",
                             name=name, names=names))

    # --- use -----------------------------------------------------------------------------

    @contextmanager
    def lease(
        self, name: str | None, *, abandoned: Callable[[], bool] = lambda: False
    ) -> Iterator[Lease]:
        """Wait for the model's turn (bounded queue), load it if needed, and hand it out.

        Raises ``UnknownModel``, ``QueueFull``, ``ClientGone`` (``abandoned()`` turned true
        while waiting) or ``EngineError`` (the load failed).
        """
        ticket = object()
        with self._lock:
            entry = self._find(name)
            if entry.in_flight > self.queue_depth:
                raise QueueFull(_(
                    "model {name!r} is busy: one reply generating and {waiting} waiting (queue "
                    "holds {queue_depth}); retry later", name=entry.name,
                    waiting=entry.in_flight - 1, queue_depth=self.queue_depth))
            entry.in_flight += 1
            with self._turns:
                entry.waiting.append(ticket)
        queued = True
        try:
            with self._turns:
                while entry.waiting[0] is not ticket:
                    if abandoned():
                        raise ClientGone(_("the client left while waiting"))
                    self._turns.wait(0.1)
            while not entry.lock.acquire(timeout=0.1):
                if abandoned():
                    raise ClientGone(_("the client left while waiting"))
            self._leave(entry, ticket)
            queued = False
            try:
                entry.busy = True
                engine = self._ensure_loaded(entry)
                yield Lease(entry.name, engine)
            finally:
                entry.busy = False
                entry.last_used = time.monotonic()
                entry.lock.release()
        finally:
            if queued:
                self._leave(entry, ticket)
            with self._lock:
                entry.in_flight -= 1

    def _leave(self, entry: _Entry, ticket: object) -> None:
        with self._turns:
            if ticket in entry.waiting:
                entry.waiting.remove(ticket)
            self._turns.notify_all()

    def _ensure_loaded(self, entry: _Entry) -> Engine:
        """Called with ``entry.lock`` held."""
        if entry.engine is not None and (entry.engine.alive or not entry.owned):
            return entry.engine
        assert entry.params is not None
        self._make_room(entry)
        engine = entry.engine or self._factory(entry.params)
        entry.engine = engine
        entry.loading = True
        try:
            engine.load()
        except EngineError:
            entry.engine = None
            raise
        finally:
            entry.loading = False
        return engine

    def _make_room(self, keep: _Entry) -> None:
        """Unload the least recently used idle models the pool loaded, down to ``max_loaded``."""
        with self._lock:
            loaded = [e for e in self._entries.values() if e.owned and e.loaded and e is not keep]
        loaded.sort(key=lambda e: e.last_used)
        while len(loaded) >= self.max_loaded:
            victim = loaded.pop(0)
            if not victim.lock.acquire(blocking=False):
                continue  # busy: let it be, even if that means one model more for a while
            try:
                if victim.engine is not None:
                    victim.engine.unload()
                    victim.engine = None
            finally:
                victim.lock.release()

    def close(self) -> None:
        """Unload the engines the pool loaded; registered ones stay with their owners."""
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if entry.owned and entry.engine is not None:
                got = entry.lock.acquire(timeout=10)  # a reply still running: stop it anyway
                try:
                    entry.engine.unload()
                    entry.engine = None
                finally:
                    if got:
                        entry.lock.release()
