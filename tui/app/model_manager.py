"""The loaded models, by path: the current one, and others kept beside it while they fit.

``ensure`` loads (blocking: call it from a thread worker); a second model stays loaded beside
the first only when its estimate fits what is free now, otherwise the idle ones are unloaded
first. Thread-safe. No widget is touched here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message
from tinydb import Query

from tui.engine.base import Engine
from tui.engine.protocol import GenerationStats, LoadParams, ModelInfo
from tui.models.fit import FitEstimate, Resources
from tui.store import Store

MiB = 1024 * 1024
EngineFactory = Callable[[LoadParams], Engine]
PidHook = Callable[[int, str], None]


@dataclass
class LoadedModel:
    path: str
    name: str
    engine: Engine
    info: ModelInfo
    estimate: FitEstimate | None = None


def fits_beside(estimate: FitEstimate | None, resources: Resources) -> bool:
    """Whether a model with ``estimate`` fits in what is free now (with a safety margin)."""
    if estimate is None:
        return False
    margin = max(256 * MiB, resources.ram_total // 20)
    if estimate.ram_bytes + margin > resources.ram_available:
        return False
    return not (estimate.vram_bytes and estimate.vram_bytes > resources.vram_free)


class ModelManager:
    def __init__(
        self,
        factory: EngineFactory,
        *,
        on_watch: PidHook | None = None,
        on_unwatch: Callable[[int], None] | None = None,
        resources: Callable[[], Resources] = Resources.current,
    ) -> None:
        self._factory = factory
        self._on_watch = on_watch
        self._on_unwatch = on_unwatch
        self._resources = resources
        self._lock = threading.RLock()
        self._loaded: dict[str, LoadedModel] = {}
        self.current_path: str | None = None

    # -- reading -----------------------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        with self._lock:
            return self._loaded.get(self.current_path or "")

    def get(self, path: str) -> LoadedModel | None:
        with self._lock:
            return self._loaded.get(path)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    # -- changing ----------------------------------------------------------------------------

    def add(self, path: str, name: str, engine: Engine, info: ModelInfo,
            estimate: FitEstimate | None = None) -> LoadedModel:
        """Register an engine loaded elsewhere (the app's first model)."""
        entry = LoadedModel(path, name, engine, info, estimate)
        with self._lock:
            self._loaded[path] = entry
            self.current_path = path
        if self._on_watch is not None and info.worker_pid > 0:
            self._on_watch(info.worker_pid, name)
        return entry

    def ensure(self, params: LoadParams, name: str,
               estimate: FitEstimate | None = None, *, key: str | None = None) -> LoadedModel:
        """The model at ``params.model_path``, loaded if it is not, made current.

        Blocking. Other models stay loaded only when this one fits beside them; raises what
        the engine raises when the load fails (the previous current model stays current).
        ``key`` names the engine instead of the path (a profile's own n_ctx/LoRA/GPU layers:
        ``tui.models.profiles.engine_key``).
        """
        path = key or params.model_path
        with self._lock:
            entry = self._loaded.get(path)
        if entry is not None and entry.engine.alive:
            with self._lock:
                self.current_path = path
            return entry
        if entry is not None:  # its worker died: load it again
            self.unload(path)
        if self._loaded and not fits_beside(estimate, self._resources()):
            for other in self.loaded():
                self.unload(other.path)
        engine = self._factory(params)
        info = engine.load()
        return self.add(path, name, engine, info, estimate)

    def ensure_remote(self, key: str, name: str, build: Callable[[], Engine]) -> LoadedModel:
        """A remote model (keyed by ``tui.models.endpoints.remote_key(base_url, model)``),
        made current; built and asked for its model list when not yet known. Blocking. It
        takes no memory here, so the local models stay loaded beside it."""
        with self._lock:
            entry = self._loaded.get(key)
        if entry is not None and entry.engine.alive:
            with self._lock:
                self.current_path = key
            return entry
        if entry is not None:
            self.unload(key)
        engine = build()
        info = engine.load()
        return self.add(key, name, engine, info)

    def unload(self, path: str) -> bool:
        with self._lock:
            entry = self._loaded.pop(path, None)
            if self.current_path == path:
                self.current_path = None
        if entry is None:
            return False
        if self._on_unwatch is not None and entry.info.worker_pid > 0:
            self._on_unwatch(entry.info.worker_pid)
        try:
            entry.engine.cancel()
            entry.engine.unload()
        except Exception:  # an engine that fails to unload is gone anyway
            pass
        return True

    def unload_all(self) -> None:
        for entry in self.loaded():
            self.unload(entry.path)


# -- messages the app posts from its model workers ---------------------------------------------


class ModelSwitchFailed(Message):
    def __init__(self, name: str, error: str) -> None:
        super().__init__()
        self.name = name
        self.error = error


class ModelUnloaded(Message):
    def __init__(self, path: str, was_current: bool) -> None:
        super().__init__()
        self.path = path
        self.was_current = was_current


# -- usage per model, in the store's "profiles" table ------------------------------------------

PROFILES_TABLE = "profiles"


def record_usage(store: Store, model: str, stats: GenerationStats) -> dict[str, Any]:
    """Count one more reply for ``model``: replies, mean generation tok/s, mean ttft."""
    table = store.table(PROFILES_TABLE)
    doc = table.get(Query().name == model)
    old: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {"name": model}
    got = old.get("usage")
    usage: dict[str, Any] = dict(got) if isinstance(got, dict) else {}
    n = int(usage.get("replies", 0))
    mean_tps = float(usage.get("mean_tokens_per_s", 0.0))
    mean_ttft = float(usage.get("mean_ttft_s", 0.0))
    usage = {
        **usage,
        "replies": n + 1,
        "mean_tokens_per_s": (mean_tps * n + stats.generation_tokens_per_s) / (n + 1),
        "mean_ttft_s": (mean_ttft * n + stats.time_to_first_token_s) / (n + 1),
    }
    new = {**old, "name": model, "usage": usage}
    table.upsert(new, Query().name == model)
    return new


def usage_of(store: Store) -> dict[str, dict[str, Any]]:
    """Usage by model name (empty when the table cannot be read)."""
    try:
        rows = store.table(PROFILES_TABLE).all()
    except Exception:
        return {}
    return {str(r.get("name")): dict(r.get("usage") or {}) for r in rows if r.get("name")}
