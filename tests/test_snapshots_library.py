"""SVG snapshot of the template library screen. Update with --snapshot-update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.app_fixtures import make_app, make_paths, wait_for
from tests.test_snapshots import steady_cursors
from tui.app.app import LmdeskApp
from tui.app.screens.templates import TemplatesScreen
from tui.store import Store


async def open_library(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, LmdeskApp)
    await wait_for(pilot, lambda: app.model_state == "ready")
    await pilot.press("alt+t")
    await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
    steady_cursors(app)
    await pilot.pause(0.2)


def test_template_library_screen(snap_compare: Any, tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    app = make_app(tmp_path, store=store, model_name="smollm2-135m")
    assert snap_compare(app, terminal_size=(120, 36), run_before=open_library)
