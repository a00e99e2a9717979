"""Code highlighting while a reply streams: no per-frame lexer searches, same final colours."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pygments.lexers import get_lexer_by_name
from textual.content import Content
from textual.highlight import HighlightTheme, highlight

from tui.app.widgets import markdown_lite
from tui.app.widgets.markdown_lite import (
    ChunkedHighlighter,
    highlight_code,
    known_language,
    same_content,
    warm_highlighting,
)

PYTHON = "\n".join(
    ["import json", "", "", "class Todo:", '    """A to-do list."""', "",
     "    def __init__(self) -> None:", "        self.items: list[str] = []", "",
     "    def add(self, item: str) -> None:", "        self.items.append(item)"] * 3)


@pytest.fixture(autouse=True)
def fresh_language_cache() -> Iterator[None]:
    known_language.cache_clear()
    yield
    known_language.cache_clear()


def _count_calls(monkeypatch: pytest.MonkeyPatch, namespace: dict[str, Any], name: str,
                 ) -> list[tuple[object, ...]]:
    calls: list[tuple[object, ...]] = []
    real = namespace[name]

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setitem(namespace, name, counted)
    return calls


def test_an_unknown_fence_language_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pygments searches its plug-ins' entry points for a name it does not know, every call
    searches = _count_calls(monkeypatch, get_lexer_by_name.__globals__, "find_plugin_lexers")
    for _ in range(5):
        body = highlight_code("$ ls\nfile.txt", "console-output", HighlightTheme, 1)
    assert len(searches) == 1
    assert known_language("console-output") == "text"
    assert same_content(body, highlight("$ ls\nfile.txt", language="text"))


def _colours(content: Content) -> list[tuple[str, ...]]:
    """The styles on each visible character (spans may be cut differently, and the line
    breaks between runs joined, for the same colours)."""
    by_char: list[list[str]] = [[] for _ in content.plain]
    for span in content.spans:
        for index in range(span.start, span.end):
            by_char[index].append(str(span.style))
    return [tuple(styles) for char, styles in zip(content.plain, by_char, strict=True)
            if char != "\n"]


@pytest.mark.parametrize("language", ["python", "no-such-language", None])
def test_a_block_streamed_line_by_line_ends_as_textual_draws_it(language: str | None) -> None:
    chunked = ChunkedHighlighter()
    lines = PYTHON.split("\n")
    for end in range(1, len(lines) + 1):
        live = chunked("\n".join(lines[:end]), language, HighlightTheme, 1)
    whole = highlight(PYTHON, language=language, theme=HighlightTheme)
    assert live.plain == PYTHON
    assert _colours(live) == _colours(whole)
    if language == "python":
        assert len(set(_colours(live))) > 3
    # the finished message is drawn by highlight_code: exactly Textual's rendering
    assert same_content(highlight_code(PYTHON, language, HighlightTheme, 1), whole)


def test_a_block_without_a_language_is_guessed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    guesses = _count_calls(monkeypatch, vars(markdown_lite), "guess_language")
    chunked = ChunkedHighlighter()
    lines = PYTHON.split("\n")
    for end in range(1, len(lines) + 1):
        live = chunked("\n".join(lines[:end]), None, HighlightTheme, 1)
    assert len(guesses) == 1
    sample = guesses[0][0]
    assert isinstance(sample, str)
    assert sample.count("\n") + 1 == ChunkedHighlighter.GUESS_LINES
    assert any(span.style for span in live.spans)  # guessed as Python, so coloured


def test_a_block_not_yet_guessed_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    guesses = _count_calls(monkeypatch, vars(markdown_lite), "guess_language")
    live = ChunkedHighlighter()("def f():\n    pass", None, HighlightTheme, 1)
    assert guesses == []
    assert live.plain == "def f():\n    pass"
    assert same_content(live, highlight("def f():\n    pass", language="text"))


def test_an_empty_tail_is_not_highlighted(monkeypatch: pytest.MonkeyPatch) -> None:
    highlights = _count_calls(monkeypatch, vars(markdown_lite), "highlight")
    chunked = ChunkedHighlighter()
    assert chunked("", "python", HighlightTheme, 1).plain == ""
    assert highlights == []
    chunked("x = 1", "python", HighlightTheme, 1)
    assert len(highlights) == 1


def test_warming_builds_the_lexers_and_knows_the_unknown(monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:
    highlights = _count_calls(monkeypatch, vars(markdown_lite), "highlight")
    warm_highlighting(("python", "bash", "not-a-language"))
    assert len(highlights) == 3
    assert known_language.cache_info().currsize == 3
    assert known_language("not-a-language") == "text"
    assert known_language("python") == "python"
