"""A theme with a bad variable value is refused when it is read (issue 22.4): it used to load,
then stop the app at the first paint, and with `theme = "bad"` in config.toml, every start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_fixtures import make_app, make_paths, notifications, pilot_test
from tui.app.themes import ThemeFileError, parse_theme
from tui.config import Settings

BAD = ('name = "bad"\nprimary = "#58a6ff"\n'
       '[variables]\n"footer-key-foreground" = "not-a-colour!!"\n')


@pytest.mark.parametrize(("name", "value", "why"), [
    ("footer-key-foreground", "not-a-colour!!", "is not a colour"),
    ("footer-key-foreground", "bold", "is not a colour"),
    ("block-cursor-text-style", "blinky", "is not a text style"),
    ("my-own", "{ }", "is not a value"),
])
def test_bad_variable_values_are_refused(name: str, value: str, why: str) -> None:
    with pytest.raises(ThemeFileError) as info:
        parse_theme({"name": "t", "primary": "#fff", "variables": {name: value}}, "t.toml")
    assert f"t.toml: {name} = {value!r} {why}" in str(info.value)


def test_good_variable_values_pass() -> None:
    theme = parse_theme({"name": "t", "primary": "#fff", "variables": {
        "footer-key-foreground": "red", "block-cursor-text-style": "bold not underline",
        "link-color": "auto 87%", "input-selection-background": "$primary 30%",
        "my-own": "3"}}, "t.toml")
    assert theme.variables["link-color"] == "auto 87%"


@pilot_test
async def test_theme_bad_in_config_starts_with_the_default_and_one_notice(
    tmp_path: Path,
) -> None:
    themes = make_paths(tmp_path).themes_dir
    themes.mkdir(parents=True)
    (themes / "bad.toml").write_text(BAD)
    app = make_app(tmp_path, settings=Settings(theme="bad"))
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == "lmdesk-dark" and app.is_running
        about = [text for _s, text in notifications(app) if "theme" in text.lower()]
        assert len(about) == 1
        assert "bad.toml: footer-key-foreground = 'not-a-colour!!' is not a colour" in about[0]
        assert "theme = 'bad' in config.toml is not a theme that loaded: using lmdesk-dark" \
            in about[0]
