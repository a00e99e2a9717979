"""The Textual app (the only package that imports Textual)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

__all__ = ["LmdeskApp"]


def __getattr__(name: str) -> Any:
    if name == "LmdeskApp":
        from tui.app.app import LmdeskApp

        return LmdeskApp
    raise AttributeError(name)
