"""Issue 22, item 7, in the app: beside one unreadable or damaged conversation file the app
opens, says so in one line naming the file, and lists and opens the other conversations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_fixtures import make_app, make_paths, notifications, pilot_test, wait_for
from tests.test_store_unreadable import changed_since_indexed, conv_file, fill, refuse_reading
from tui.app.app import LmdeskApp
from tui.store import Store


def listed(app: LmdeskApp) -> list[str]:
    assert app.main_screen is not None
    options = app.main_screen.conversations
    return [str(options.get_option_at_index(i).id) for i in range(options.option_count)]


def naming(app: LmdeskApp, path: Path) -> list[str]:
    return [message for _severity, message in notifications(app) if path.name in message]


@pytest.mark.parametrize(("last_opened", "changed"), [
    ("Gamma", True), ("Beta", True),
    ("Beta", False),  # as the index had it: the store finds out when the app opens it
])
@pilot_test
async def test_the_app_opens_beside_an_unreadable_conversation_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, last_opened: str, changed: bool
) -> None:
    data = make_paths(tmp_path).data_dir
    ids = fill(data)
    with Store.open(data) as store:
        store.tree(ids[last_opened])  # the conversation the app opens first
    bad = conv_file(data, ids["Beta"])
    if changed:
        changed_since_indexed(data, ids["Beta"])
    refuse_reading(monkeypatch, bad)
    app = make_app(tmp_path, store=Store.open(data))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None
                       and app.main_screen.meta is not None)
        await pilot.pause()
        [line] = naming(app, bad)
        assert "(Permission denied)" in line
        assert {ids["Alpha"], ids["Gamma"]} <= set(listed(app))
        await app.open_conversation(ids["Alpha"])
        await pilot.pause()
        assert app.main_screen is not None and app.main_screen.meta is not None
        assert app.main_screen.meta.id == ids["Alpha"]
        assert [m.content for m in app.main_screen.pane.history] == [
            "question Alpha", "answer Alpha"]
        assert app.is_running
    app.store.close()


@pilot_test
async def test_the_app_opens_beside_a_damaged_conversation_file(tmp_path: Path) -> None:
    data = make_paths(tmp_path).data_dir
    ids = fill(data)
    bad = conv_file(data, ids["Beta"])
    bad.write_bytes(b"\x00\x00 not json")
    changed_since_indexed(data, ids["Beta"])
    app = make_app(tmp_path, store=Store.open(data))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None
                       and app.main_screen.meta is not None)
        await pilot.pause()
        [line] = naming(app, bad)
        assert "could not be read" in line and "set aside" in line
        assert {ids["Alpha"], ids["Beta"], ids["Gamma"]} <= set(listed(app))
        await app.open_conversation(ids["Gamma"])
        await pilot.pause()
        assert app.main_screen is not None and app.main_screen.meta is not None
        assert [m.content for m in app.main_screen.pane.history] == [
            "question Gamma", "answer Gamma"]
    app.store.close()
    assert len(list(bad.parent.glob(f"{bad.name}.corrupt-*"))) == 1
