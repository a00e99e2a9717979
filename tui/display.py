"""Text shown to a person: counts with the right plural, and text from elsewhere (a model's
output, a template body, a file name) made safe to print on a terminal."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TextIO, cast

from tui.i18n import n_

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 and C1 control characters, tab and newline aside: ESC starts the sequences that move
the cursor, clear the screen, set the title or write the clipboard (OSC 52)."""


_NOUNS: dict[str, Callable[[int], str]] = {
    "token": lambda n: n_("{count} token", "{count} tokens", n),
    "message": lambda n: n_("{count} message", "{count} messages", n),
    "memory": lambda n: n_("{count} memory", "{count} memories", n),
    "reply": lambda n: n_("{count} reply", "{count} replies", n),
    "file": lambda n: n_("{count} file", "{count} files", n),
    "chunk": lambda n: n_("{count} chunk", "{count} chunks", n),
    "problem": lambda n: n_("{count} problem", "{count} problems", n),
    "passage": lambda n: n_("{count} passage", "{count} passages", n),
}
"""The nouns counted on screen, each with its plural forms in the catalog."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 token``, ``2 tokens``, ``0 tokens`` in the current language; ``plural`` where adding
    an s is wrong (for a noun without catalog entry)."""
    known = _NOUNS.get(noun)
    if known is not None:
        return known(n)
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``) instead of acted on,
    tab and newline kept; a lone surrogate (a file name that is not UTF-8) shown as ``\\udcxx``
    instead of failing to encode."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = "".join(f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


class TerminalText(io.TextIOBase):
    """A text stream that shows control characters (``printable``) instead of sending them
    to the terminal: what a model, a template or a file name holds cannot move the cursor,
    clear the screen or write the clipboard."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.stream.fileno()


def for_terminal(stream: TextIO) -> TextIO:
    """``stream``, made safe when it is a terminal (a pipe or a file gets the text as it is)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return cast("TextIO", TerminalText(stream)) if tty else stream
