"""Export and import (issues 21.12, 21.13, 22.15): where exports go, private files, import
errors that keep the dialog, a file imported twice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.app_fixtures import make_app, notifications, pilot_test, send
from tui.app.screens.text_input import TextInputScreen


@pilot_test
async def test_export_goes_to_the_export_folder_with_its_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_in = tmp_path / "somewhere"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    exports = tmp_path / "Documents" / "lmdesk"
    monkeypatch.setenv("LMDESK_EXPORT_DIR", str(exports))
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        await send(pilot, "export me")
        await pilot.press("f6")
        assert isinstance(app.screen, TextInputScreen)
        value = app.screen.query_one(Input).value
        assert value == str(exports / "export-me.md")  # the full path, in the dialog
        await pilot.press("enter")
        await pilot.pause()
    target = exports / "export-me.md"
    assert target.is_file() and not list(started_in.iterdir())
    assert any(f"Exported to {target}" in text for _s, text in notifications(app))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # private, like the store
