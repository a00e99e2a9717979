"""Export and import (issues 21.12, 21.13, 22.15): where exports go, private files, import
errors that keep the dialog, a file imported twice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.app_fixtures import chat, make_app, notifications, pilot_test, send
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


@pilot_test
async def test_a_wrong_import_path_keeps_the_dialog_with_the_error(tmp_path: Path) -> None:
    import json

    from tests.app_fixtures import export_data

    good = tmp_path / "conv.json"
    good.write_text(json.dumps(export_data("Trip notes", 2)))
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("f7")
        assert isinstance(app.screen, TextInputScreen)
        dialog = app.screen
        box = dialog.query_one(Input)
        box.value = str(tmp_path / "conv.jsn")  # a typo
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog  # still open, what was typed kept
        assert box.value == str(tmp_path / "conv.jsn")
        assert "no such file" in dialog.error_text and "conv.jsn" in dialog.error_text
        box.value = str(good)
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, TextInputScreen)
        assert chat(app).meta.title == "Trip notes"


@pilot_test
async def test_importing_the_same_file_twice_asks_first(tmp_path: Path) -> None:
    import json

    from tests.app_fixtures import export_data
    from tui.app.screens.confirm import ConfirmScreen

    good = tmp_path / "conv.json"
    good.write_text(json.dumps(export_data("Trip notes", 2)))
    app = make_app(tmp_path)

    async def import_it() -> None:
        await pilot.press("f7")
        app.screen.query_one(Input).value = str(good)
        await pilot.press("enter")
        await pilot.pause()

    async with app.run_test() as pilot:
        await pilot.pause()
        await import_it()
        titles = [m.title for m in app.store.list_conversations()]
        assert titles.count("Trip notes") == 1
        await import_it()
        assert isinstance(app.screen, ConfirmScreen)  # noticed: asks
        await pilot.press("n")
        await pilot.pause()
        assert [m.title for m in app.store.list_conversations()].count("Trip notes") == 1
        await import_it()
        await pilot.press("y")
        await pilot.pause()
        assert [m.title for m in app.store.list_conversations()].count("Trip notes") == 2
