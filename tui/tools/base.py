"""What a tool is: a name, a description and a JSON schema for the model, and how to run it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tui.engine.protocol import ToolSpec
from tui.i18n import _

MAX_RESULT_CHARS = 16_000
"""A longer result is cut (the model's window is small; say so in the text)."""


class ToolError(Exception):
    """A call that could not run or failed: one line, which the model is told."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    """The arguments' JSON schema."""
    run: Callable[[dict[str, Any]], str] = field(compare=False, repr=False)
    source: str = "builtin"
    """"builtin" or "mcp:SERVER"."""

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, json.dumps(dict(self.parameters)))


def parse_arguments(text: str) -> dict[str, Any]:
    """A call's arguments (JSON text from the model) as a dict; ToolError says what is wrong."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(_("the arguments are not valid JSON ({msg})", msg=exc.msg)) from None
    if not isinstance(value, dict):
        raise ToolError(_("the arguments must be a JSON object"))
    return value


def clip(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[cut: {len(text) - MAX_RESULT_CHARS} more characters]"
