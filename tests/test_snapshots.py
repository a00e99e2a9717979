"""SVG snapshots of the main screen (pytest-textual-snapshot). Update with --snapshot-update."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.app_fixtures import export_data, make_app, make_paths, send, wait_for
from tui.app.app import LmdeskApp
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.config import Settings
from tui.engine.protocol import Done, EngineEvent
from tui.engine.scripted import ScriptedEngine
from tui.store import Store

REPLY = (
    "Use a **list comprehension**:\n\n```python\nsquares = [n * n for n in range(10)]\n```\n\n"
    "Or `map`:\n\n```python\nsquares = list(map(lambda n: n * n, range(10)))\n```"
)


def snapshot_app(tmp_path: Path, settings: Settings | None = None) -> LmdeskApp:
    """A fixed store: three conversations (one pinned), the newest open."""
    store = Store.open(make_paths(tmp_path).data_dir)
    base = 1_700_000_000.0
    store.import_json(export_data("Story ideas", 1, updated=base + 1))
    store.import_json(export_data("Tax letter", 1, pinned=True, updated=base + 2))
    data = export_data("Python squares", 1, updated=base + 3, reply=lambda _i: REPLY)
    data["messages"][0]["content"] = "How do I square the numbers 0 to 9 in Python?"
    store.import_json(data)
    return make_app(tmp_path, store=store, settings=settings, model_name="smollm2-135m")


async def settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, LmdeskApp)
    await wait_for(pilot, lambda: app.model_state == "ready")
    # where the monitor column shows (wide terminals), wait for its first (fake) sample:
    # on a loaded machine it can land after a fixed pause
    monitors = list(app.screen.query(MonitorPanel))
    if monitors and monitors[0].display and monitors[0].region.width:
        await wait_for(pilot, lambda: monitors[0].snapshot is not None)
    steady_cursors(app)
    await pilot.pause(0.2)


def steady_cursors(app: LmdeskApp) -> None:
    """A blinking cursor is drawn or not depending on when the picture is taken: keep it on."""
    from textual.widgets import Input, TextArea

    for screen in app.screen_stack:
        for widget in screen.query("Input, TextArea"):
            if isinstance(widget, Input | TextArea):
                widget.cursor_blink = False


def test_main_screen_80x24(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(snapshot_app(tmp_path), terminal_size=(80, 24), run_before=settle)


def test_main_screen_160x48(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(snapshot_app(tmp_path), terminal_size=(160, 48), run_before=settle)


def test_main_screen_ansi_theme(snap_compare: Any, tmp_path: Path) -> None:
    app = snapshot_app(tmp_path, Settings(theme="lmdesk-ansi"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=settle)


def test_help_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(snapshot_app(tmp_path), terminal_size=(120, 40), press=["f1"],
                        run_before=settle)


def test_main_screen_80x24_monitor_overlay(snap_compare: Any, tmp_path: Path) -> None:
    """f12 at 80x24: the full monitor laid over the right of the chat."""
    assert snap_compare(snapshot_app(tmp_path), terminal_size=(80, 24), press=["f12"],
                        run_before=settle)


class _FixedStatsEngine(ScriptedEngine):
    """Streams its reply in small pieces with the same figures every run, so the picture
    of the finished reply does not depend on the machine's speed."""

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[EngineEvent]:
        for event in super().generate(*args, **kwargs):
            if isinstance(event, Done):
                event = dataclasses.replace(event, stats=dataclasses.replace(
                    event.stats, generation_tokens_per_s=88.4, prompt_tokens_per_s=512.0,
                    time_to_first_token_s=0.14, total_seconds=0.5))
            yield event


def test_a_streamed_reply_once_finished(snap_compare: Any, tmp_path: Path) -> None:
    """The reply streamed in front of the user, once done, is drawn as a stored reply is
    (the live tail, its blank room and frozen stretches are gone)."""
    store = Store.open(make_paths(tmp_path).data_dir)
    store.import_json(export_data("Story ideas", 1, updated=1_700_000_001.0))
    app = make_app(tmp_path, store=store, model_name="smollm2-135m",
                   engine=_FixedStatsEngine("\n\n".join([REPLY] * 3), delay_s=0.002))

    async def stream(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await send(pilot, "How do I square the numbers 0 to 9 in Python?")
        steady_cursors(app)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(100, 30), run_before=stream)
