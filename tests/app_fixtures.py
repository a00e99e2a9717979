"""Helpers for the app's Pilot tests: a real store in tmp_path, a scripted engine."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tui.app.app import LmdeskApp
from tui.config import Paths, Settings
from tui.engine.base import Engine
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.store import Store

CODE_REPLY = (
    "Two ways:\n\n```python\nprint('hello')\n```\n\nor in the shell:\n\n```bash\necho hello\n```\n"
    "Either works."
)


def pilot_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def make_paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "data", tmp_path / "config", tmp_path / "cache")


def make_app(
    tmp_path: Path,
    *,
    engine: Engine | None = None,
    reply: str = CODE_REPLY,
    settings: Settings | None = None,
    store: Store | None = None,
    engine_factory: Callable[[LoadParams], Engine] | None = None,
    notices: Sequence[str] = (),
    model_name: str = "scripted",
    show_welcome: bool = False,
    sampler: Any = None,
) -> LmdeskApp:
    paths = make_paths(tmp_path)
    if store is None:
        store = Store.open(paths.data_dir)
    if engine_factory is None:
        the_engine = engine if engine is not None else ScriptedEngine(reply)

        def engine_factory(_params: LoadParams) -> Engine:
            return the_engine

    app = LmdeskApp(
        settings=settings or Settings(), paths=paths, store=store,
        engine_factory=engine_factory, model_path="scripted.gguf", model_name=model_name,
        notices=list(notices), show_welcome=show_welcome,
    )
    app.sampler = sampler if sampler is not None else FakeSampler()
    return app


class FakeSampler:
    """Fixed monitor figures (snapshots stay the same on every machine); no /proc reads."""

    def __init__(self, gpus: Sequence[Any] = ()) -> None:
        self.gpus = tuple(gpus)
        self.samples = 0
        self._watched: dict[int, str] = {}

    def watch(self, pid: int, label: str = "model") -> None:
        self._watched[pid] = label

    def unwatch(self, pid: int) -> None:
        self._watched.pop(pid, None)

    @property
    def watched(self) -> dict[int, str]:
        return dict(self._watched)

    def sample(self) -> Any:
        from tui.monitor import MonitorSnapshot, ProcessSample

        self.samples += 1
        gib = 1024**3
        workers = tuple(ProcessSample(pid, label, 212 * 1024**2, 0.0)
                        for pid, label in self._watched.items())
        return MonitorSnapshot(
            time=0.0, ram_total=16 * gib, ram_used=6 * gib, ram_available=10 * gib,
            cpu_percent=7.0, app_rss=96 * 1024**2, app_cpu_percent=1.0, workers=workers,
            gpus=self.gpus, gpu_status="ok" if self.gpus else "no GPU",
        )

    def close(self) -> None:
        pass


async def wait_for(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def wait_idle(pilot: Pilot[Any], timeout: float = 10.0) -> None:
    """Wait until no reply is being written, then let the UI settle."""
    app = pilot.app
    assert isinstance(app, LmdeskApp)
    await wait_for(pilot, lambda: app.model_state != "loading", timeout)
    await wait_for(pilot, lambda: chat(app).pane.job is None, timeout)
    await pilot.pause()


def chat(app: LmdeskApp) -> Any:
    from tui.app.screens.chat import ChatScreen

    screen = next(s for s in app.screen_stack if isinstance(s, ChatScreen))
    return screen


async def send(pilot: Pilot[Any], text: str, *, wait: bool = True) -> None:
    app = pilot.app
    assert isinstance(app, LmdeskApp)
    chat(app).pane.prompt.focus()
    chat(app).pane.prompt.load_text(text)
    await pilot.press("enter")
    if wait:
        await wait_idle(pilot)


def rendered(view: Any, width: int = 80) -> str:
    """The plain text a finished MessageView shows at ``width``."""
    return "\n".join(line.plain for line in view.render().lines(width))


def notifications(app: LmdeskApp) -> list[tuple[str, str]]:
    """(severity, message) of every notification shown so far."""
    return [(n.severity, n.message) for n in app._notifications]


def export_data(
    title: str, pairs: int, *, pinned: bool = False, updated: float | None = None,
    reply: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """A conversation in the store's JSON export format (import_json writes it in one go)."""
    now = time.time() if updated is None else updated
    messages: list[dict[str, Any]] = []
    for i in range(pairs):
        messages.append({"role": "user", "content": f"{title} question {i}", "created": now})
        answer = reply(i) if reply is not None else f"{title} answer {i}"
        messages.append({
            "role": "assistant", "content": answer, "created": now, "model": "scripted",
            "stats": {
                "generated_tokens": 12, "generation_tokens_per_s": 42.0,
                "time_to_first_token_s": 0.25, "prompt_tokens": 30, "stop_reason": "stop",
            },
        })
    return {
        "format": "lmdesk-conversation", "version": 1,
        "conversation": {"title": title, "created": now, "updated": now, "pinned": pinned,
                         "model": "scripted"},
        "messages": messages,
    }


_seeded = 0


def seed(store: Store, title: str, pairs: int, *, pinned: bool = False) -> str:
    """Add a conversation of ``pairs`` prompt/reply pairs; later seeds are more recent."""
    global _seeded
    _seeded += 1
    data = export_data(title, pairs, pinned=pinned, updated=time.time() + _seeded)
    return store.import_json(data).id
