"""Themes are TOML files mapping onto ``textual.theme.Theme``; the stylesheet sits beside them.

A theme file::

    name = "my-theme"          # required, the name shown in the theme picker
    dark = true
    primary = "#58a6ff"        # required; any Textual colour, "ansi_blue" included
    secondary = "#8b949e"      # optional: accent warning error success foreground
                               #   background surface panel boost
    ansi = false               # true: use the terminal's own 16 colours
    [variables]                # optional Textual theme variables
    "footer-key-foreground" = "#58a6ff"

Shipped themes live in ``themes/`` (``tui/_themes`` in the wheel); a user's own in
``<config>/themes``. A user theme with a shipped name replaces it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

import tui
from tui.i18n import _

DEFAULT_DARK = "lmdesk-dark"
DEFAULT_LIGHT = "lmdesk-light"
STYLESHEET = "lmdesk.tcss"

_COLOURS = (
    "primary", "secondary", "accent", "warning", "error", "success",
    "foreground", "background", "surface", "panel", "boost",
)
_NUMBERS = ("luminosity_spread", "text_alpha")
_FLAGS = ("dark", "ansi")
_KNOWN = {"name", "variables", *_COLOURS, *_NUMBERS, *_FLAGS}


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file and the problem."""


def assets_dir() -> Path:
    """Where the shipped themes and the stylesheet are: the wheel's copy, else the checkout's."""
    package = Path(tui.__file__).parent
    installed = package / "_themes"
    return installed if installed.is_dir() else package.parent / "themes"


def stylesheet_path() -> Path:
    return assets_dir() / STYLESHEET


def _check_colour(source: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(_("{source}: {key} should be a colour string, got {value!r}",
                               source=source, key=key, value=value))
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeFileError(_("{source}: {key} = {value!r} is not a colour",
                               source=source, key=key, value=value)) from None
    return value


def parse_theme(data: dict[str, Any], source: str) -> Theme:
    """Build a theme from a parsed file; raises ThemeFileError naming ``source``."""
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ThemeFileError(_("{source}: unknown key {value!r}", source=source, value=unknown[0]))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError(_("{source}: needs a name", source=source))
    if "primary" not in data:
        raise ThemeFileError(_("{source}: needs a primary colour", source=source))
    kwargs: dict[str, Any] = {"name": name.strip()}
    for key in _COLOURS:
        if key in data:
            kwargs[key] = _check_colour(source, key, data[key])
    for key in _FLAGS:
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeFileError(_("{source}: {key} should be true or false",
                                       source=source, key=key))
            kwargs[key] = data[key]
    for key in _NUMBERS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ThemeFileError(_("{source}: {key} should be a number",
                                       source=source, key=key))
            kwargs[key] = float(value)
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeFileError(_("{source}: [variables] should map names to strings", source=source))
    kwargs["variables"] = dict(variables)
    theme = Theme(**kwargs)
    try:
        generated = theme.to_color_system().generate()
    except Exception as exc:  # a bad colour combination
        raise ThemeFileError(f"{source}: {exc}") from None
    _check_variables(source, theme.variables, generated)
    return theme


def _check_variables(source: str, variables: dict[str, str], known: dict[str, str]) -> None:
    """Parse each [variables] value as the stylesheet will (a colour where Textual's
    variable of that name is a colour, a text style for ``*-style`` ones): a value it would
    reject fails here, naming the variable, instead of stopping every start of the app."""
    from textual.css.stylesheet import Stylesheet

    for name, value in variables.items():
        if name.endswith("-style"):
            rule, kind = "text-style", _("text style (bold, italic, underline, none...)")
        elif name in known:
            rule, kind = "color", "colour"
        else:
            rule, kind = "", "value"
        css = f"Screen {{ {rule}: {value}; }}" if rule else f"Screen {{ color: ${name}; }}"
        sheet = Stylesheet(variables={**known, **({} if rule else {name: value})})
        try:
            sheet.add_source(css, read_from=(source, name))
            sheet.parse()
        except Exception:
            if not rule:  # a variable of the user's own: only its syntax is checked
                try:
                    from textual.css.tokenize import tokenize_value

                    list(tokenize_value(value, (source, name)))
                    continue
                except Exception:
                    pass
            raise ThemeFileError(_("{source}: {name} = {value!r} is not a {kind}",
                                   source=source, name=name, value=value, kind=kind)) from None


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeFileError(_("{name}: cannot read ({exc})", name=path.name, exc=exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(_("{name}: not valid TOML ({exc})", name=path.name, exc=exc)) from None
    return parse_theme(data, path.name)


@dataclass
class ThemeSet:
    themes: list[Theme] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_theme_dir(folder: Path) -> ThemeSet:
    """Every ``*.toml`` theme in ``folder`` (missing folder: none); bad files become problems."""
    result = ThemeSet()
    try:
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    except OSError as exc:
        result.problems.append(f"{folder}: {exc}")
        return result
    for path in files:
        try:
            result.themes.append(load_theme_file(path))
        except ThemeFileError as exc:
            result.problems.append(str(exc))
    return result


def load_themes(user_dir: Path | None) -> ThemeSet:
    """The shipped themes then the user's (which win on a name clash)."""
    shipped = load_theme_dir(assets_dir())
    if user_dir is None:
        return shipped
    user = load_theme_dir(user_dir)
    by_name = {t.name: t for t in shipped.themes}
    by_name.update({t.name: t for t in user.themes})
    return ThemeSet(list(by_name.values()), shipped.problems + user.problems)


def problems_notice(problems: list[str], choice: str = "") -> str:
    """One notification for every broken theme file, and ``choice``: what became of the
    theme config.toml asks for when it is not one that loaded."""
    parts = []
    if problems:
        count = len(problems)
        head = "A theme file was" if count == 1 else f"{count} theme files were"
        parts.append(f"{head} not loaded: " + "; ".join(problems))
    if choice:
        parts.append(choice)
    return ". ".join(parts)
