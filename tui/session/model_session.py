"""ModelSession: the engines a front end uses, which one is current, and the one generation
lock they share.

The app, ``lmdesk ask`` and ``lmdesk serve`` while chatting all go through it. ``switch``
loads (or reuses) the engine for a ``ResolvedModel`` and makes it current; it blocks, so the
app calls it from one named worker, and hears about the outcome through the ``listener`` it
passes in (called from that worker's thread). Other loaded models stay beside the current one
only when the new one's fit estimate says it fits in what is free now.

Every generation on these engines (a chat reply, a compare run, an API request) holds
``lock``: the local worker runs one reply at a time and the user's reply must not be
interleaved with a client's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, EngineEvent, LoadParams, ModelInfo, SamplingParams
from tui.i18n import _

if TYPE_CHECKING:
    from tui.engine.base import Engine
    from tui.models.fit import FitEstimate, Resources
    from tui.session.choice import ResolvedModel

MiB = 1024 * 1024
EngineFactory = Callable[[LoadParams], "Engine"]
LoadState = Literal["loading", "ready", "failed"]


@dataclass
class LoadedModel:
    model: ResolvedModel
    engine: Engine
    info: ModelInfo
    estimate: FitEstimate | None = None

    @property
    def key(self) -> str:
        return self.model.key

    @property
    def name(self) -> str:
        return self.model.name


# -- what the session tells its front end ------------------------------------------------------


@dataclass(frozen=True)
class ModelLoading:
    name: str


@dataclass(frozen=True)
class ModelReady:
    loaded: LoadedModel


@dataclass(frozen=True)
class ModelFailed:
    name: str
    error: str
    kept: LoadedModel | None
    """The model that stays current (the one before the failed switch), if any."""


@dataclass(frozen=True)
class ModelUnloaded:
    key: str
    was_current: bool
    worker_pid: int = 0


SessionEvent = ModelLoading | ModelReady | ModelFailed | ModelUnloaded
Listener = Callable[[SessionEvent], None]


def fits_beside(estimate: FitEstimate | None, resources: Resources) -> bool:
    """Whether a model with ``estimate`` fits in what is free now (with a safety margin)."""
    if estimate is None:
        return False
    margin = max(256 * MiB, resources.ram_total // 20)
    if estimate.ram_bytes + margin > resources.ram_available:
        return False
    return not (estimate.vram_bytes and estimate.vram_bytes > resources.vram_free)


class ModelSession:
    """Thread-safe. ``listener`` is called from the thread that did the work."""

    def __init__(
        self,
        factory: EngineFactory,
        *,
        listener: Listener | None = None,
        resources: Callable[[], Resources] | None = None,
        remote_timeout_s: float = 60.0,
    ) -> None:
        self.factory = factory
        """Builds a local engine from load parameters (also for engines the session does
        not keep, such as the compare view's second model)."""
        self._listener = listener
        self._resources = resources
        self.remote_timeout_s = remote_timeout_s
        self.lock = threading.Lock()
        """Held around every generation on these engines."""
        self._state_lock = threading.RLock()
        self._loaded: dict[str, LoadedModel] = {}
        self._current: str | None = None
        self._settled = threading.Event()
        self._settled.set()
        self._generating: dict[threading.Event, Engine] = {}
        self.state: LoadState = "failed"
        self.error = _("no model was chosen yet")
        self.loading: str | None = None
        """The name being loaded while ``state`` is "loading"."""
        self.last_error = ""
        """Why the last ``switch`` failed."""

    # -- reading -------------------------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        with self._state_lock:
            return self._loaded.get(self._current or "")

    def get(self, key: str) -> LoadedModel | None:
        with self._state_lock:
            return self._loaded.get(key)

    def loaded(self) -> list[LoadedModel]:
        with self._state_lock:
            return list(self._loaded.values())

    # -- switching -----------------------------------------------------------------------------

    def begin(self, name: str) -> None:
        """Say a switch to ``name`` is under way (call before starting the worker that calls
        ``switch``): until it ends, ``wait_ready`` waits for it."""
        with self._state_lock:
            self._settled.clear()
            self.state = "loading"
            self.loading = name
        self._tell(ModelLoading(name))

    def switch(self, model: ResolvedModel,
               estimate: FitEstimate | None = None) -> LoadedModel | None:
        """Load (or reuse) ``model``'s engine and make it current. Blocking.

        None when it failed: the failure is told to the listener and kept in ``last_error``,
        and the previous model stays current when it is still alive."""
        with self._state_lock:
            self._settled.clear()
            self.state, self.loading = "loading", model.label
        try:
            entry = self._ensure(model, estimate)
        except Exception as exc:
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            kept = self.current
            with self._state_lock:
                if kept is not None and kept.engine.alive:
                    self.state = "ready"
                else:
                    kept = None
                    self._current = None
                    self.state, self.error = "failed", error
                self.loading = None
                self._settled.set()
            self.last_error = error
            self._tell(ModelFailed(model.label, error, kept))
            return None
        with self._state_lock:
            self._current = entry.key
            self.state, self.error, self.loading = "ready", "", None
            self._settled.set()
        self._tell(ModelReady(entry))
        return entry

    def _ensure(self, model: ResolvedModel, estimate: FitEstimate | None) -> LoadedModel:
        with self._state_lock:
            entry = self._loaded.get(model.key)
        if entry is not None and entry.engine.alive:
            if entry.model != model:  # same engine, newer profile values (its sampling)
                entry = LoadedModel(model, entry.engine, entry.info, entry.estimate)
                with self._state_lock:
                    self._loaded[model.key] = entry
            return entry
        if entry is not None:  # its worker died: load it again
            self.unload(model.key)
        if not model.remote and self._local_loaded() and not fits_beside(
                estimate, self._now()):
            for other in self.loaded():
                if not other.model.remote:
                    self.unload(other.key)
        engine = model.build(self.factory, remote_timeout_s=self.remote_timeout_s)
        info = engine.load()
        entry = LoadedModel(model, engine, info, estimate)
        with self._state_lock:
            self._loaded[model.key] = entry
        return entry

    def adopt(self, model: ResolvedModel, engine: Engine, info: ModelInfo) -> LoadedModel:
        """Make an engine loaded elsewhere current (tests, and a front end that built its
        engine itself)."""
        entry = LoadedModel(model, engine, info)
        with self._state_lock:
            self._loaded[model.key] = entry
            self._current = model.key
            self.state, self.error, self.loading = "ready", "", None
            self._settled.set()
        self._tell(ModelReady(entry))
        return entry

    def _local_loaded(self) -> bool:
        return any(not m.model.remote for m in self.loaded())

    def _now(self) -> Resources:
        if self._resources is not None:
            return self._resources()
        from tui.models.fit import Resources

        return Resources.current()

    def unload(self, key: str) -> bool:
        """Unload one engine (all its memory goes back). False when it was not loaded."""
        with self._state_lock:
            entry = self._loaded.pop(key, None)
            was_current = self._current == key
            if was_current:
                self._current = None
                self.state, self.error = "failed", (
                    _("it was unloaded: pick a model with the model switcher"))
        if entry is None:
            return False
        try:
            entry.engine.cancel()
            entry.engine.unload()
        except Exception:  # an engine that fails to unload is gone anyway
            pass
        self._tell(ModelUnloaded(key, was_current, entry.info.worker_pid))
        return True

    def unload_all(self) -> None:
        for entry in self.loaded():
            self.unload(entry.key)

    # -- generating ----------------------------------------------------------------------------

    def wait_ready(self, cancel: threading.Event) -> LoadedModel | None:
        """Block until no switch is under way; the current model, or None if ``cancel`` is
        set first. Raises ``EngineError`` when there is no model to use."""
        while not self._settled.wait(0.05):
            if cancel.is_set():
                return None
        current = self.current
        if current is None:
            raise EngineError(_("The model is not loaded: {error}", error=self.error))
        return current

    def acquire(self, cancel: threading.Event) -> bool:
        """Take ``lock`` (in a worker thread); False if ``cancel`` is set first."""
        while not self.lock.acquire(timeout=0.05):
            if cancel.is_set():
                return False
        return True

    @contextmanager
    def generation(self, cancel: threading.Event) -> Iterator[bool]:
        """Hold ``lock`` for a generation; yields False (holding nothing) when ``cancel`` was
        set while waiting for it."""
        got = self.acquire(cancel)
        try:
            yield got
        finally:
            if got:
                self.lock.release()

    def generate(
        self, engine: Engine, messages: Sequence[ChatMessage], sampling: SamplingParams,
        cancel: threading.Event, **kwargs: object,
    ) -> Iterator[EngineEvent]:
        """``engine.generate`` holding ``lock``; yields nothing when ``cancel`` is set while
        waiting for it. A cancel set later is passed on to the engine."""
        with self.generation(cancel) as got:
            if not got:
                return
            with self._state_lock:
                self._generating[cancel] = engine
            try:
                cancel_sent = False
                for event in engine.generate(messages, sampling,
                                             **kwargs):  # type: ignore[arg-type]
                    yield event
                    if cancel.is_set() and not cancel_sent:
                        engine.cancel()
                        cancel_sent = True
            finally:
                with self._state_lock:
                    self._generating.pop(cancel, None)

    def cancel(self, cancel: threading.Event) -> None:
        """Stop the generation ``cancel`` belongs to, at once (also while the engine is still
        reading the prompt, before any token), or before it starts."""
        cancel.set()
        with self._state_lock:
            engine = self._generating.get(cancel)
        if engine is not None:
            engine.cancel()

    def close(self) -> None:
        """Stop every reply and unload every engine."""
        for entry in self.loaded():
            with suppress(Exception):
                entry.engine.cancel()
        self.unload_all()

    def _tell(self, event: SessionEvent) -> None:
        if self._listener is not None:
            self._listener(event)
