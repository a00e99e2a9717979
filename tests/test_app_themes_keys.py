"""Themes (files, user themes, persistence) and keys (keymap, help screen)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from tests.app_fixtures import (
    chat,
    make_app,
    make_paths,
    notifications,
    pilot_test,
    send,
)
from tui.app import keymap
from tui.app.keymap import ACTIONS, check_keymap
from tui.app.screens.help import HelpScreen
from tui.app.themes import (
    ThemeFileError,
    assets_dir,
    load_theme_dir,
    load_themes,
    parse_theme,
    stylesheet_path,
)
from tui.config import Settings
from tui.store import Store

GOOD = (
    'name = "mine"\nprimary = "#ff0000"\ndark = false\n'
    '[variables]\n"footer-key-foreground" = "red"\n'
)


def test_shipped_themes_and_stylesheet_load() -> None:
    assert stylesheet_path().is_file()
    shipped = load_theme_dir(assets_dir())
    assert shipped.problems == []
    names = {t.name: t for t in shipped.themes}
    assert {"lmdesk-dark", "lmdesk-light", "lmdesk-ansi"} <= set(names)
    assert names["lmdesk-ansi"].ansi
    assert names["lmdesk-ansi"].primary.startswith("ansi_")
    assert not names["lmdesk-light"].dark


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"primary": "#fff"}, "needs a name"),
        ({"name": "x"}, "needs a primary"),
        ({"name": "x", "primary": "not-a-colour"}, "is not a colour"),
        ({"name": "x", "primary": "#fff", "dark": "yes"}, "true or false"),
        ({"name": "x", "primary": "#fff", "colour": "#fff"}, "unknown key"),
        ({"name": "x", "primary": "#fff", "variables": {"a": 1}}, "[variables]"),
    ],
)
def test_bad_theme_data_is_explained(data: dict[str, object], why: str) -> None:
    with pytest.raises(ThemeFileError, match=None) as info:
        parse_theme(data, "t.toml")
    assert why in str(info.value) and "t.toml" in str(info.value)


def test_user_theme_overrides_and_broken_ones_are_listed(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(GOOD)
    (tmp_path / "dark.toml").write_text('name = "lmdesk-dark"\nprimary = "#00ff00"\n')
    (tmp_path / "broken.toml").write_text("name = ")
    (tmp_path / "nocolour.toml").write_text('name = "y"\nprimary = "blurple"\n')
    themes = load_themes(tmp_path)
    by_name = {t.name: t for t in themes.themes}
    assert by_name["mine"].primary == "#ff0000"
    assert by_name["lmdesk-dark"].primary == "#00ff00"
    assert len(themes.problems) == 2


@pilot_test
async def test_broken_user_theme_is_one_notification(tmp_path: Path) -> None:
    themes = make_paths(tmp_path).themes_dir
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text(GOOD)
    (themes / "broken.toml").write_text("name = ")
    (themes / "bad2.toml").write_text('name = "z"\n')
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        about_themes = [t for _s, t in notifications(app) if "theme file" in t]
        assert len(about_themes) == 1
        assert "broken.toml" in about_themes[0] and "bad2.toml" in about_themes[0]
        assert "mine" in app.available_themes
        app.theme = "mine"
        await pilot.pause()
        assert app.current_theme.primary == "#ff0000"


@pilot_test
async def test_theme_choice_persists(tmp_path: Path) -> None:
    data = make_paths(tmp_path).data_dir
    store = Store.open(data)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        assert app.theme == "lmdesk-dark"
        app.theme = "lmdesk-light"
        await pilot.pause()
    assert store.get_setting("theme") == "lmdesk-light"
    again = make_app(tmp_path, store=store)
    async with again.run_test() as pilot:
        assert again.theme == "lmdesk-light"
    # a theme named in config.toml wins; an unknown one is reported
    third = make_app(tmp_path, store=store, settings=Settings(theme="lmdesk-ansi"))
    async with third.run_test() as pilot:
        assert third.theme == "lmdesk-ansi"
    fourth = make_app(tmp_path, store=store, settings=Settings(theme="nope"))
    async with fourth.run_test() as pilot:
        await pilot.pause()
        assert fourth.theme == "lmdesk-light"
        assert any("'nope'" in text for _s, text in notifications(fourth))


def test_check_keymap() -> None:
    good, problems = check_keymap({"regenerate": "f11", "bogus": "x", "search": ""})
    assert good == {"regenerate": "f11"}
    assert len(problems) == 2
    ids = [spec.id for spec in ACTIONS]
    assert len(ids) == len(set(ids))


def test_every_screen_and_widget_binding_is_remappable() -> None:
    """Each binding of a screen or widget has an id, and check_keymap takes every one (the
    ids come from the classes' BINDINGS, not from a second list kept by hand)."""
    import importlib
    import pkgutil

    from textual.binding import Binding

    import tui.app.screens
    import tui.app.widgets

    missing = []
    for package in (tui.app.screens, tui.app.widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for obj in vars(module).values():
                if isinstance(obj, type) and obj.__module__ == module.__name__:
                    for binding in vars(obj).get("BINDINGS", ()) or ():
                        if isinstance(binding, Binding) and not binding.id:
                            missing.append(f"{obj.__name__}: {binding.key}")
    assert missing == []
    ids = set(keymap.declared_bindings())
    assert {"models.unload", "profiles.use", "log.copy", "send"} <= ids
    good, problems = keymap.check_keymap({i: f"ctrl+f{n}" for n, i in enumerate(sorted(ids))})
    assert problems == [] and set(good) == ids


@pilot_test
async def test_keymap_from_settings_remaps_keys(tmp_path: Path) -> None:
    settings = Settings(keymap={"new_conversation": "f11", "nothing_like_this": "f12"})
    app = make_app(tmp_path, reply="ok", settings=settings)
    async with app.run_test() as pilot:
        await send(pilot, "hello")
        first = chat(app).meta.id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert chat(app).meta.id == first
        await pilot.press("f11")
        await pilot.pause()
        assert chat(app).meta.id != first
        assert any("nothing_like_this" in text for _s, text in notifications(app))
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one(DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert ["f11", "new_conversation", "Start a new conversation"] in rows
        await pilot.press("f1")  # f1 again closes it
        assert not isinstance(app.screen, HelpScreen)


@pilot_test
async def test_sidebar_toggles(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        sidebar = chat(app).query_one("#sidebar")
        assert sidebar.display
        await pilot.press("ctrl+b")
        assert not sidebar.display
        await pilot.press("ctrl+b")
        assert sidebar.display
        assert chat(app).query_one("#monitor").region.height == 1  # one status line


@pilot_test
async def test_help_shows_the_ids_in_full_at_100_columns(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause(0.2)
        shown = "\n".join("".join(seg.text for seg in strip)
                          for strip in app.screen._compositor.render_strips())
        for binding_id in ("new_conversation", "toggle_sidebar", "regenerate",
                           "copy_message", "system_prompt", "toggle_monitor"):
            assert f" {binding_id} " in shown, binding_id


@pilot_test
async def test_a_remap_onto_another_actions_key_is_refused_in_one_notice(tmp_path: Path) -> None:
    # the help's old example: f10 is the doctor's key
    settings = Settings(keymap={"regenerate": "f10", "search": "f11", "copy_message": "f11"})
    app = make_app(tmp_path, reply="ok", settings=settings)
    async with app.run_test() as pilot:
        await pilot.pause()
        keymap_notes = [text for _s, text in notifications(app) if "keymap:" in text]
        assert len(keymap_notes) == 1
        assert "regenerate = 'f10' refused: f10 is already doctor's key" in keymap_notes[0]
        assert "search = 'f11' refused" in keymap_notes[0]
        assert app.keymap == {}
        await pilot.press("f10")  # still the doctor
        await pilot.pause()
        from tui.app.screens.doctor import DoctorScreen

        assert isinstance(app.screen, DoctorScreen)
