"""The template body syntax: plain text with ``{{ name }}`` slots, and nothing else.

No attributes, calls, filters or tags, so rendering cannot run code; ``\\{{`` writes a literal
``{{``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tui.i18n import _
from tui.prompting.errors import TemplateError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_OPEN = re.compile(r"\\?\{[{%]")


@dataclass(frozen=True)
class Slot:
    """A ``{{ name }}`` in a body, with where it starts (1-based)."""

    name: str
    line: int
    column: int


def position(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def parse(body: str) -> tuple[str | Slot, ...]:
    """Split a body into literal text and slots; a ``TemplateError`` for anything else."""
    parts: list[str | Slot] = []
    text: list[str] = []
    i = 0
    while (m := _OPEN.search(body, i)) is not None:
        start, token = m.start(), m.group()
        text.append(body[i:start])
        i = m.end()
        if token.startswith("\\"):
            text.append(token[1:])
            continue
        line, column = position(body, start)
        eol = body.find("\n", start)
        eol = len(body) if eol == -1 else eol
        if token == "{%":
            close = body.find("%}", i, eol)
            snippet = body[start: close + 2 if close != -1 else eol]
            raise TemplateError(
                _("{snippet!r}: tags like {{% ... %}} are not supported (nothing was run); "
                  "templates only substitute variables written {{{{ name }}}}", snippet=snippet),
                line=line, column=column)
        close = body.find("}}", i, eol)
        if close == -1:
            raise TemplateError(_("'{{' is not closed with '}}' on the same line (write \\{{ "
                                  "for a literal '{{')"), line=line, column=column)
        inner = body[i:close].strip()
        if not inner:
            raise TemplateError(_("empty '{{ }}': put a variable name inside"),
                                line=line, column=column)
        if not _NAME.match(inner):
            raise TemplateError(
                _("'{{{{ {inner} }}}}' is not a variable name (nothing was run): only plain "
                  "names like {{{{ topic }}}} are allowed, no attributes, calls, filters or "
                  "expressions", inner=inner), line=line, column=column)
        parts.append("".join(text))
        text = []
        parts.append(Slot(inner, line, column))
        i = close + 2
    text.append(body[i:])
    parts.append("".join(text))
    return tuple(p for p in parts if p != "")


def slots(body: str) -> tuple[Slot, ...]:
    return tuple(p for p in parse(body) if isinstance(p, Slot))
