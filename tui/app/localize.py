"""Binding descriptions in the current language.

Textual reads a class's ``BINDINGS`` once, when the class is defined (at import, before the
language is chosen), and every widget copies them when it is made. So the descriptions are
written in English (marked ``N_`` for the catalog) and translated here, on the classes, when
the app is built: every footer, the help and the key panel then show them translated.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.binding import Binding, BindingsMap
from textual.dom import DOMNode

from tui.i18n import N_, _

_ENGLISH: dict[type[DOMNode], BindingsMap] = {}
"""Each class's bindings as written, kept so the app can be built again in another language."""

TEXTUAL_MESSAGES = (
    N_("palette"), N_("Open the command palette"), N_("Theme"), N_("Change the current theme"),
    N_("Quit"), N_("Quit the application as soon as possible"), N_("Keys"),
    N_("Show help for the focused widget and a summary of available keys"),
    N_("Hide the keys and widget help panel"), N_("Minimize"),
    N_("Minimize the widget and restore to normal size"), N_("Maximize"),
    N_("Maximize the focused widget"), N_("Screenshot"),
    N_("Save an SVG 'screenshot' of the current screen"),
)
"""Textual's own words that lmdesk shows: the palette key in the footer, its system commands."""


def translated(binding: Binding) -> Binding:
    return replace(binding, description=_(binding.description),
                   tooltip=_(binding.tooltip) if binding.tooltip else binding.tooltip)


def _translated_map(bindings: BindingsMap) -> BindingsMap:
    return BindingsMap.from_keys({key: [translated(b) for b in group]
                                  for key, group in bindings.key_to_bindings.items()})


def _classes(root: type[DOMNode]) -> list[type[DOMNode]]:
    found: list[type[DOMNode]] = []
    pending = [root]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def localize_bindings() -> None:
    """Every widget, screen and app class: its bindings' descriptions in the current
    language (from the English as written, however often this runs)."""
    for cls in _classes(DOMNode):
        merged = vars(cls).get("_merged_bindings")
        if not isinstance(merged, BindingsMap):
            continue
        english = _ENGLISH.setdefault(cls, merged)
        cls._merged_bindings = _translated_map(english)


def localize_node(node: Any) -> None:
    """Bindings a node added to itself when it was made (the app's palette key)."""
    node._bindings = _translated_map(node._bindings)
