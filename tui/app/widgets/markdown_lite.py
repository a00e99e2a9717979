"""Markdown drawn by one widget: for messages that no longer change.

Textual's ``Markdown`` widget makes a widget per block, which is right for the reply being
streamed but costs too much for hundreds of finished messages (opening a long conversation,
and a long reply whose early part is done). This turns Markdown into a single ``Visual`` that
looks like Textual's rendering: the same inline styles, theme variables, code highlighting and
block spacing, numbered code blocks, with wrapping and hanging indents done per width.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound
from textual.content import Content, Span
from textual.css.styles import RulesMap
from textual.highlight import ANSIDarkHighlightTheme, HighlightTheme, guess_language, highlight
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

BULLETS = ("• ", "▪ ", "‣ ", "⭑ ", "◦ ")
INLINE_CODE = "$text-warning 95% on $warning 10%"
MUTED = "$text-muted"
HEADING_STYLES = {
    1: "bold $markdown-h1-color",
    2: "bold $markdown-h2-color",
    3: "bold $markdown-h3-color",
    4: "$markdown-h4-color bold",
    5: "$markdown-h5-color",
    6: "$markdown-h6-color italic",
}
EMPTY = Content("")
HEADING_MARGINS = {1: (2, 1), 2: (2, 1), 3: (1, 1), 4: (1, 1), 5: (1, 1), 6: (1, 1)}


@dataclass(frozen=True)
class Block:
    """A run of text drawn with a prefix on its first line and another on the rest."""

    content: Content
    first: Content = EMPTY
    rest: Content = EMPTY
    top: int = 0
    bottom: int = 0
    align: Literal["left", "center"] = "left"
    rule: bool = False
    """A horizontal rule: drawn as wide as there is room."""

    def prefixed(self, first: Content, rest: Content) -> Block:
        return replace(self, first=first + self.first, rest=rest + self.rest)


def same_content(a: Content, b: Content) -> bool:
    """Same text and styles (``Content``'s own ``==`` compares the text alone)."""
    return a.plain == b.plain and a.spans == b.spans


def inline_content(token: Token) -> Content:
    """An inline token's text with emphasis, code and links styled (as Textual does)."""
    parts: list[str] = []
    spans: list[Span] = []
    stack: list[tuple[str, int]] = []
    position = 0

    def add(text: str) -> None:
        nonlocal position
        parts.append(text)
        position += len(text)

    for child in token.children or ():
        kind = child.type
        if kind == "text":
            add(re.sub(r"\s+", " ", child.content))
        elif kind == "hardbreak":
            add("\n")
        elif kind == "softbreak":
            add(" ")
        elif kind == "code_inline":
            start = position
            add(child.content)
            spans.append(Span(start, position, INLINE_CODE))
        elif kind == "em_open":
            stack.append(("italic", position))
        elif kind == "strong_open":
            stack.append(("bold", position))
        elif kind == "s_open":
            stack.append(("strike", position))
        elif kind == "link_open":
            stack.append(("underline", position))
        elif kind == "image":
            add(f"🖼  ({child.attrs.get('alt', '') or child.content})")
        elif kind.endswith("_close") and stack:
            style, start = stack.pop()
            spans.append(Span(start, position, style))
        elif kind == "html_inline":
            add(child.content)
    return Content("".join(parts), spans=spans)


Highlighter = Callable[[str, str | None, type[HighlightTheme], int], Content]
"""(code, language, theme, the code block's number) to highlighted text."""


@lru_cache(maxsize=256)
def known_language(language: str) -> str:
    """The language Pygments will highlight ``language`` as: itself when it has a lexer,
    "text" otherwise. Pygments looks an unknown name up among its plug-ins' entry points on
    every call (several milliseconds each), and a fence label is often one it does not know
    ("console", "output"), so the answer is kept."""
    try:
        get_lexer_by_name(language)
    except ClassNotFound:
        return "text"
    return language


def highlight_code(code: str, language: str | None, theme: type[HighlightTheme],
                   number: int) -> Content:
    return highlight(code, language=known_language(language) if language else None,
                     theme=theme)


COMMON_LANGUAGES = ("python", "bash", "sh", "javascript", "typescript", "json", "text")


def warm_highlighting(languages: Iterable[str] = COMMON_LANGUAGES) -> None:
    """Build the lexers replies use most, so the first code block of a session does not stall
    the stream while Pygments imports one (tens of milliseconds each)."""
    for language in languages:
        highlight("x", language=known_language(language))


@dataclass
class _GrowingCode:
    language: str | None
    theme: type[HighlightTheme]
    lines_done: int = 0
    text_done: str = ""
    chunks: list[Content] = field(default_factory=list)
    guess: str | None = None
    """The language guessed for a block without one, once it has enough lines."""


class ChunkedHighlighter:
    """Highlights code blocks that grow as a reply streams: each complete run of ``CHUNK``
    lines once, only the lines after the last run again at each update. A construct spanning
    two runs (a long string) may be coloured differently until the reply is finished and
    drawn whole, which is the price of not re-highlighting a 500-line block per frame.

    A block without a language is drawn plain until it has ``GUESS_LINES`` lines, then in
    the language guessed once from those lines: guessing runs every lexer's heuristics (tens
    of milliseconds), which per frame would cost more than the rest of the reply."""

    CHUNK = 16
    GUESS_LINES = 4

    def __init__(self) -> None:
        self._blocks: dict[int, _GrowingCode] = {}

    def clear(self) -> None:
        self._blocks.clear()

    def _lexer(self, state: _GrowingCode, lines: list[str]) -> str:
        if state.language:
            return known_language(state.language)
        if state.guess is None:
            if len(lines) <= self.GUESS_LINES:
                return "text"
            sample = "\n".join(lines[:self.GUESS_LINES])
            state.guess = known_language(guess_language(sample, None))
        return state.guess

    def __call__(self, code: str, language: str | None, theme: type[HighlightTheme],
                 number: int) -> Content:
        state = self._blocks.get(number)
        if (state is None or state.language != language or state.theme is not theme
                or not code.startswith(state.text_done)):
            state = self._blocks[number] = _GrowingCode(language, theme)
        lines = code.split("\n")
        lexer = self._lexer(state, lines)
        while len(lines) - state.lines_done > self.CHUNK:
            run = lines[state.lines_done:state.lines_done + self.CHUNK]
            state.chunks.append(highlight("\n".join(run), language=lexer, theme=theme))
            state.lines_done += self.CHUNK
            state.text_done += "\n".join(run) + "\n"
        rest = "\n".join(lines[state.lines_done:])
        tail = highlight(rest, language=lexer, theme=theme) if rest else EMPTY
        return Content("\n").join([*state.chunks, tail])


class _Builder:
    def __init__(self, first_number: int, ansi: bool,
                 highlighter: Highlighter = highlight_code) -> None:
        self.number = first_number
        self.code_blocks = 0
        self.ansi = ansi
        self.highlighter = highlighter

    def blocks(self, tokens: Sequence[Token], start: int, end: int, depth: int) -> list[Block]:
        """Blocks for tokens[start:end] (a run of sibling block tokens and their insides)."""
        out: list[Block] = []
        index = start
        while index < end:
            token = tokens[index]
            close = _closing(tokens, index)
            kind = token.type
            if kind == "heading_open":
                level = int(token.tag[1])
                top, bottom = HEADING_MARGINS[level]
                text = inline_content(tokens[index + 1]).stylize_before(HEADING_STYLES[level])
                out.append(Block(text, top=top, bottom=bottom,
                                 align="center" if level == 1 else "left"))
            elif kind == "paragraph_open":
                bottom = 0 if token.hidden else 1
                out.append(Block(inline_content(tokens[index + 1]), bottom=bottom))
            elif kind in ("fence", "code_block"):
                out.extend(self.fence(token))
            elif kind in ("bullet_list_open", "ordered_list_open"):
                out.extend(self.list(tokens, index, close, depth))
            elif kind == "blockquote_open":
                inner = self.blocks(tokens, index + 1, close, depth)
                bar = Content.styled("▌ ", "$text-primary 50%")
                quoted = [b.prefixed(bar, bar) for b in inner]
                out.extend(_margins(quoted, 1, 1))
            elif kind == "hr":
                out.append(Block(Content(""), top=1, bottom=1, rule=True))
            elif kind == "table_open":
                out.append(self.table(tokens, index, close))
            elif kind in ("html_block", "inline"):
                out.append(Block(Content(token.content.rstrip()), bottom=1))
            index = close + 1
        return out

    def fence(self, token: Token) -> list[Block]:
        language = token.info.split()[0] if token.info.strip() else ""
        code = token.content.rstrip()
        theme = ANSIDarkHighlightTheme if self.ansi else HighlightTheme
        number = self.number
        body = self.highlighter(code, language or None, theme, number)
        self.number += 1
        self.code_blocks += 1
        label = Content.styled(f"[{number}]" + (f" {language}" if language else ""), MUTED)
        indent = Content("  ")
        return [Block(label, first=Content(" "), top=1),
                Block(body, first=indent, rest=indent, bottom=1)]

    def list(self, tokens: Sequence[Token], start: int, end: int, depth: int) -> list[Block]:
        ordered = tokens[start].type == "ordered_list_open"
        number = int(tokens[start].attrs.get("start", 1) or 1) if ordered else 0
        items: list[Block] = []
        index = start + 1
        while index < end:
            if tokens[index].type != "list_item_open":
                index += 1
                continue
            close = _closing(tokens, index)
            marker = f"{number}. " if ordered else BULLETS[depth % len(BULLETS)]
            bullet = Content.styled(marker, "$text-primary")
            pad = Content(" " * len(marker))
            inner = self.blocks(tokens, index + 1, close, depth + 1) or [Block(Content(""))]
            items.append(inner[0].prefixed(bullet, pad))
            items.extend(block.prefixed(pad, pad) for block in inner[1:])
            number += 1
            index = close + 1
        return _margins(items, 0, 0 if depth else 1)

    def table(self, tokens: Sequence[Token], start: int, end: int) -> Block:
        rows: list[list[Content]] = []
        header_rows = 0
        in_head = False
        row: list[Content] = []
        for token in tokens[start:end]:
            if token.type == "thead_open":
                in_head = True
            elif token.type == "thead_close":
                in_head = False
            elif token.type == "tr_open":
                row = []
            elif token.type == "inline":
                row.append(inline_content(token))
            elif token.type == "tr_close":
                rows.append(row)
                header_rows += in_head
        widths = [0] * max((len(r) for r in rows), default=0)
        for r in rows:
            for column, cell in enumerate(r):
                widths[column] = max(widths[column], cell.cell_length)
        lines: list[Content] = []
        separator = Content.styled(" │ ", MUTED)
        for row_index, r in enumerate(rows):
            cells = [cell.pad_right(widths[c] - cell.cell_length) for c, cell in enumerate(r)]
            line = separator.join(cells)
            if row_index < header_rows:
                line = line.stylize_before("bold $text-primary")
            lines.append(line)
            if row_index == header_rows - 1:
                lines.append(Content.styled("─┼─".join("─" * w for w in widths), MUTED))
        return Block(Content("\n").join(lines), bottom=1)


def _closing(tokens: Sequence[Token], index: int) -> int:
    """Index of the token that closes tokens[index] (itself for a token without a pair)."""
    token = tokens[index]
    if token.nesting != 1:
        return index
    level = 0
    for position in range(index, len(tokens)):
        level += tokens[position].nesting
        if level == 0:
            return position
    return len(tokens) - 1


def _margins(blocks: list[Block], top: int, bottom: int) -> list[Block]:
    if blocks:
        blocks[0] = replace(blocks[0], top=max(top, blocks[0].top))
        blocks[-1] = replace(blocks[-1], bottom=max(bottom, blocks[-1].bottom))
    return blocks


def _keep_line_breaks(state: StateCore) -> None:
    """A single line break in a paragraph stays a line break (as chat UIs show replies):
    poems, addresses and line-per-item answers keep their lines. Code is not touched."""
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def reply_parser() -> MarkdownIt:
    """The Markdown parser for replies, live and finished: GFM-like, line breaks kept."""
    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("keep_line_breaks", _keep_line_breaks)
    return parser


_parser: MarkdownIt | None = None


def parse_blocks(
    source: str, *, first_number: int = 1, ansi: bool = False,
    highlighter: Highlighter = highlight_code,
) -> tuple[list[Block], int]:
    """The blocks of a Markdown text and how many code blocks it has."""
    global _parser
    if _parser is None:
        _parser = reply_parser()
    tokens = _parser.parse(source)
    builder = _Builder(first_number, ansi, highlighter)
    return builder.blocks(tokens, 0, len(tokens), 0), builder.code_blocks


class BlocksVisual(Visual):
    """Blocks laid out for a width: wrapped, indented, spaced; cached per width."""

    def __init__(self, blocks: Sequence[Block], *, trailing: int = 0) -> None:
        self.blocks = list(blocks)
        self.trailing = trailing
        """Blank lines after the last block."""
        self._cache: tuple[int, list[Content]] | None = None

    def lines(self, width: int) -> list[Content]:
        if self._cache is not None and self._cache[0] == width:
            return self._cache[1]
        out: list[Content] = []
        previous_bottom = 0
        for block in self.blocks:
            if out:
                out.extend([Content("")] * max(previous_bottom, block.top))
            previous_bottom = block.bottom
            room = max(1, width - block.first.cell_length)
            if block.rule:
                out.append(block.first + Content.styled("─" * room, "$secondary"))
                continue
            wrapped = block.content.wrap(room) if block.content else [Content("")]
            for number, line in enumerate(wrapped):
                if block.align == "center":
                    line = line.pad_left(max(0, (room - line.cell_length) // 2))
                out.append((block.first if number == 0 else block.rest) + line)
        out.extend([Content("")] * self.trailing)
        self._cache = (width, out)
        return out

    def render_strips(
        self, width: int, height: int | None, style: Style, options: RenderOptions
    ) -> list[Strip]:
        if not width:
            return []
        text = Content("\n").join(self.lines(width))
        return text.render_strips(width, height, style, options)

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return container_width

    def get_height(self, rules: RulesMap, width: int) -> int:
        return len(self.lines(width))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def segment_cut(segment: str, chunk: str, min_lines: int) -> int | None:
    """The last place in ``chunk`` (text to append to ``segment``) where the text may be cut.

    A cut goes at the start of a line that follows a blank line, outside any code fence, and
    starts at column 0 with a visible character, once the segment has ``min_lines`` lines: the
    text after it then parses the same on its own. None when there is no such place yet.
    """
    if segment.count("\n") + chunk.count("\n") < min_lines:
        return None
    text = segment + chunk
    offset = len(segment)
    fence: str | None = None
    previous_blank = False
    position = 0
    cut: int | None = None
    for line_number, line in enumerate(text.splitlines(keepends=True)):
        start = position
        position += len(line)
        if (
            start >= offset and line_number >= min_lines and previous_blank and fence is None
            and not line[0].isspace()
        ):
            cut = start - offset
        if not line.endswith("\n"):
            break
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and line.strip() == marker:
                fence = None
        previous_blank = not line.strip()
    return cut
