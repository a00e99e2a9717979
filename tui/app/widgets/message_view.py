"""Messages in the chat log.

- ``MessageView``: a finished message, drawn by one widget (role, Markdown body, figures).
- ``LiveReply``: the reply being streamed. Its tail (``LiveTail``) is one widget drawing the
  same Markdown rendering, re-parsed at each update; once the tail holds a dozen lines and
  reaches a block boundary, it is frozen into a one-widget ``FrozenSegment`` and the tail starts
  again. So the work per update stays flat however long the reply grows, and an update is one
  widget's layout, not a tree of Markdown block widgets mounted and restyled. When the reply
  ends, the whole of it becomes a ``MessageView`` (what reopening the conversation shows).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from markdown_it import MarkdownIt
from textual.app import ComposeResult
from textual.content import Content
from textual.css.styles import RulesMap
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.visual import RenderOptions
from textual.widget import Widget
from textual.widgets import Static

from tui.app.widgets.markdown_lite import (
    Block,
    BlocksVisual,
    ChunkedHighlighter,
    parse_blocks,
    same_content,
)
from tui.app.widgets.reply_lines import reasoning_line, sources_line, stats_line
from tui.engine.protocol import ToolCall
from tui.i18n import N_, _
from tui.store import ReasoningPart, StoredMessage, ToolCallPart, ToolResultPart

ROLE_NAMES = {"user": N_("you"), "assistant": N_("assistant")}
INDENT = Content(" ")


def size_updated_once(widget: Widget, size: Size, virtual_size: Size, container_size: Size
                      ) -> bool:
    """Textual's ``_size_updated`` without the second layout pass it asks for.

    After a layout that changed a widget's size, Textual stores the new virtual size through a
    reactive that requests another layout of the whole screen; for the widgets of the reply
    being streamed, sized by their content, that pass changes nothing and doubled the cost of
    every frame where the reply grew by a line."""
    return Widget._size_updated(widget, size, virtual_size, container_size, layout=False)


def code_blocks(markdown: str) -> list[str]:
    """The code blocks of a Markdown text, in the order (and so the numbers) they are shown."""
    tokens = MarkdownIt("gfm-like").parse(markdown)
    return [t.content.rstrip() for t in tokens if t.type in ("fence", "code_block")]


class MessageWidget(Widget):
    """What the chat log holds: a widget showing one stored message."""

    def __init__(self, message: StoredMessage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        self.add_class(f"-{message.role}")

    @property
    def message_id(self) -> str:
        return self.message.id


class MessageView(MessageWidget):
    """A finished message in one widget."""

    DEFAULT_CSS = """
    MessageView {
        height: auto;
        padding: 0 1;
        margin-bottom: 1;
        &.-selected {
            background: $boost;
            border-left: thick $primary;
            padding-left: 0;
        }
    }
    """

    def __init__(self, message: StoredMessage, *, version: tuple[int, int] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self._visual: BlocksVisual | None = None
        self._ansi = False
        self.reasoning_shown = False
        """Whether the reasoning is shown in full (else one collapsed line)."""
        self.version = version
        """(n, of) when the message has other versions (regenerated, or edited): "‹2/3›"."""

    def set_version(self, version: tuple[int, int] | None) -> None:
        if version != self.version:
            self.version = version
            self._visual = None
            self.refresh(layout=True)

    def toggle_reasoning(self) -> bool:
        """Show or hide the reasoning and the tool calls in full; False when the message has
        neither."""
        if not self.message.reasoning and not _has_tools(self.message):
            return False
        self.reasoning_shown = not self.reasoning_shown
        self._visual = None
        self.refresh(layout=True)
        return True

    def _tool_blocks(self) -> list[Block]:
        """Each call and its result: one collapsed line each, in full when expanded."""
        blocks: list[Block] = []
        results = {p.call_id: p for p in self.message.parts if isinstance(p, ToolResultPart)}
        calls = [p for p in self.message.parts if isinstance(p, ToolCallPart)]
        for call in calls:
            result = results.get(call.call_id)
            blocks.extend(tool_step_blocks(call.name, call.arguments, result,
                                           expanded=self.reasoning_shown))
        if blocks:
            blocks.append(Block(EMPTY_CONTENT))
        return blocks

    def _reasoning_blocks(self) -> list[Block]:
        parts = [p for p in self.message.parts if isinstance(p, ReasoningPart)]
        if not parts:
            return []
        tokens = sum(p.tokens for p in parts)
        seconds = sum(p.seconds for p in parts)
        line = reasoning_line(tokens, seconds, done=True, expanded=self.reasoning_shown)
        blocks = [Block(Content.styled(line, "$text-muted"), first=INDENT, rest=INDENT)]
        if self.reasoning_shown:
            for text in self.message.reasoning.split("\n"):
                blocks.append(Block(Content.styled(text, "$text-muted italic"),
                                    first=Content("  │ "), rest=Content("  │ ")))
        blocks.append(Block(EMPTY_CONTENT))
        return blocks

    def _build(self) -> BlocksVisual:
        message = self.message
        role_style = "bold $text-accent" if message.role == "user" else "bold $text-primary"
        head = Content.styled(_(ROLE_NAMES.get(message.role, message.role)), role_style)
        if self.version is not None:
            n, of = self.version
            head = head + Content.styled(f"  ‹ {n}/{of} ›", "$text-muted")
        blocks = [Block(head)]
        if message.role == "assistant":
            blocks.extend(self._reasoning_blocks())
            blocks.extend(self._tool_blocks())
            body, _count = parse_blocks(message.content, ansi=self._ansi)
        else:
            body = [Block(Content(message.content))] if message.content else []
        blocks.extend(block.prefixed(INDENT, INDENT) for block in body)
        meta = stats_line(message) if message.role == "assistant" else ""
        if meta:
            style = "$text-error" if message.status == "error" else "$text-muted"
            blocks.append(Block(Content.styled(meta, style), first=INDENT, rest=INDENT, top=1))
        cited = sources_line(message.stats) if message.role == "assistant" else ""
        if cited:
            blocks.append(Block(Content.styled(cited, "$text-muted"), first=INDENT, rest=INDENT,
                                top=0 if meta else 1))
        return BlocksVisual(blocks)

    def render(self) -> BlocksVisual:
        ansi = self.app.native_ansi_color
        if self._visual is None or ansi != self._ansi:
            self._ansi = ansi
            self._visual = self._build()
        return self._visual

    @property
    def text(self) -> str:
        return self.message.content


EMPTY_CONTENT = Content("")
TOOL_PREFIX = Content("  ┊ ")


def _has_tools(message: StoredMessage) -> bool:
    return any(isinstance(p, ToolCallPart) for p in message.parts)


def tool_step_blocks(name: str, arguments: str, result: ToolResultPart | None, *,
                     expanded: bool) -> list[Block]:
    """A tool call under a reply: "▸ name args → result" on one line, or all of it."""
    if result is None:
        state, answer = "…", ""
    elif not result.approved:
        state, answer = "denied", ""
    elif result.error:
        state, answer = "failed", result.error
    else:
        state, answer = "→", result.content
    if not expanded:
        args = " ".join(arguments.split())
        args = args if len(args) <= 40 else args[:39] + "…"
        first = " ".join(answer.split())
        first = first if len(first) <= 50 else first[:49] + "…"
        line = f"▸ {name} {args} {state} {first}".rstrip()
        return [Block(Content.styled(line, "$text-muted"), first=INDENT, rest=INDENT)]
    blocks = [Block(Content.styled(f"▾ {name} ({state})", "$text-muted"), first=INDENT,
                    rest=INDENT)]
    for text in [f"arguments: {arguments}", *([answer] if answer else [])]:
        for row in text.split("\n"):
            blocks.append(Block(Content.styled(row, "$text-muted"), first=TOOL_PREFIX,
                                rest=TOOL_PREFIX))
    return blocks


class FrozenSegment(Widget):
    """A finished stretch of the reply being streamed, drawn by one widget."""

    DEFAULT_CSS = """
    FrozenSegment {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        self.blocks = blocks
        self._visual = BlocksVisual(blocks, trailing=blocks[-1].bottom if blocks else 0)

    def render(self) -> BlocksVisual:
        return self._visual


class FrozenGroup(Widget):
    """Up to ``SIZE`` frozen segments. A full group becomes one segment: so the live reply
    holds a handful of widgets however long it grows."""

    SIZE = 8
    DEFAULT_CSS = """
    FrozenGroup {
        height: auto;
        layout: vertical;
    }
    """


class LiveTail(Widget):
    """The end of the reply being streamed, the part that may still change: its Markdown
    parsed again at each update (a dozen lines or so: the caller freezes what is done) and
    drawn line by line. Code blocks are numbered from ``first_number``.

    A frame costs what changed, not the whole tail: only the lines that differ from the last
    frame are rendered and repainted, and the height grows ``RESERVE`` lines at a time (the
    text fills blank lines below it), so most frames need no layout of the screen, the pass
    that moves every widget of the chat log and redraws the whole terminal."""

    RESERVE = 4
    """Lines the height grows by when the text outgrows it, at least."""

    DEFAULT_CSS = """
    LiveTail {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, *, first_number: int = 1) -> None:
        super().__init__()
        self.first_number = first_number
        self.source = ""
        self._highlighter = ChunkedHighlighter()
        self._visual = BlocksVisual([])
        self._lines: list[Content] = []
        self._width = 0
        self._strips: dict[int, Strip] = {}
        self._reserved = 0
        """The height kept: the text's lines and blank room below them for the next ones."""
        self._laid_out = 0

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated_once(self, size, virtual_size, container_size)

    def show(self, source: str) -> None:
        """Draw ``source`` (the tail's whole text so far)."""
        self.source = source
        blocks, _count = parse_blocks(source, first_number=self.first_number,
                                      ansi=self.app.native_ansi_color,
                                      highlighter=self._highlighter)
        self._visual = BlocksVisual(blocks)
        width = self.size.width
        if not width or width != self._width:
            self._relayout()
            return
        old, new = self._lines, self._visual.lines(width)
        first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False))
                      if not same_content(a, b)), min(len(old), len(new)))
        end = max(len(old), len(new))
        for y in range(first, end):
            self._strips.pop(y, None)
        self._lines = new
        if len(new) > self._reserved or len(new) < self._reserved - 2 * self._step():
            self._reserved = len(new) + self._step() - 1 if new else 0
        if self._reserved != self._laid_out:
            self._laid_out = self._reserved
            self.refresh(layout=True)
        elif end > first:
            self.refresh(Region(0, first, width, end - first))

    def _relayout(self) -> None:
        """Everything again (the first update, a new width)."""
        self._width = self.size.width
        self._lines = self._visual.lines(self._width) if self._width else []
        self._strips.clear()
        self._reserved = len(self._lines) + self._step() - 1 if self._lines else 0
        self._laid_out = self._reserved
        self.refresh(layout=True)

    def _step(self) -> int:
        """Lines the height grows by: ``RESERVE``, more on a tall screen."""
        return max(self.RESERVE, self.app.size.height // 4)

    def restart(self, first_number: int, *, room: int = 0) -> None:
        """Empty, for the text after a frozen stretch, keeping ``room`` blank lines (the room
        the frozen lines leave: the reply keeps its height, no second layout pass)."""
        self.first_number = first_number
        self._highlighter.clear()
        self._reserved = room
        self.show("")

    @property
    def room(self) -> int:
        """The height kept (text and blank room below it)."""
        return self._reserved

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        lines = len(self._visual.lines(width)) if width else 0
        return max(lines, self._reserved)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._width:
            self._width = width
            self._lines = self._visual.lines(width) if width else []
            self._strips.clear()
        strip = self._strips.get(y)
        if strip is None:
            if y < len(self._lines):
                # the line alone, without Visual.to_strips' link and selection passes: their
                # style lookups cost more than the line (a reply's links are not clickable)
                options = RenderOptions(self._get_style, cast("RulesMap", self.styles))
                strip = self._lines[y].render_strips(width, 1, self.visual_style, options)[0]
            else:
                strip = Strip.blank(width, self.visual_style.rich_style)
            self._strips[y] = strip
        return strip

    def render(self) -> BlocksVisual:
        return self._visual


class LiveReply(MessageWidget):
    """The reply being written: frozen segments, a live Markdown tail, a progress line."""

    DEFAULT_CSS = """
    LiveReply {
        height: auto;
        layout: vertical;
        padding: 0 1;
        margin-bottom: 1;
        & > .msg-role {
            color: $text-primary;
            text-style: bold;
        }
        & > .msg-meta {
            color: $text-muted;
            padding: 0 1;
            height: 1;
        }
        & > .msg-reasoning, & > .msg-tools {
            color: $text-muted;
            padding: 0 1;
            display: none;
            &.-on {
                display: block;
            }
        }
        &.-selected {
            background: $boost;
            border-left: thick $primary;
            padding-left: 0;
        }
    }
    """

    def __init__(self, message: StoredMessage, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.tail = LiveTail()
        self.reasoning_shown = False
        self._reasoning: tuple[str, int, float, bool] | None = None
        self._steps: list[tuple[int, ToolCall, ToolResultPart]] = []

    def compose(self) -> ComposeResult:
        yield Static(_("assistant"), classes="msg-role", markup=False)
        yield Static(classes="msg-reasoning", markup=False)
        yield Static(classes="msg-tools", markup=False)
        yield self.tail
        model = self.message.model or ""
        yield Static(Content(_("{model} · waiting for the first token…",
                               model=model).lstrip(" ·")),
                     classes="msg-meta")

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated_once(self, size, virtual_size, container_size)

    def set_progress(self, text: str) -> None:
        # one line high whatever it says: no layout pass for the whole screen
        self.query_one(".msg-meta", Static).update(Content(text), layout=False)

    def set_reasoning(self, text: str, tokens: int, seconds: float, *, done: bool) -> None:
        """One dim line while the model thinks (its reasoning is kept, not shown in full: on
        an 80x24 screen it would push the answer away); it stays, collapsed, above the
        answer once the answer starts. ``toggle_reasoning`` shows it all."""
        self._reasoning = (text, tokens, seconds, done)
        line = self.query_one(".msg-reasoning", Static)
        line.add_class("-on")
        head = reasoning_line(tokens, seconds, done=done, expanded=self.reasoning_shown)
        if self.reasoning_shown:
            body = "\n".join(f"  │ {row}" for row in text.split("\n"))
            line.update(Content(head) + Content("\n") + Content.styled(body, "italic"))
        else:
            line.update(Content(head))
        if not done:
            self.set_progress(f"{self.message.model or ''} · thinking".lstrip(" ·"))

    def set_steps(self, steps: list[tuple[int, ToolCall, ToolResultPart]]) -> None:
        """The tool calls made so far, one line each (in full when expanded)."""
        self._steps = list(steps)
        box = self.query_one(".msg-tools", Static)
        box.add_class("-on")
        lines: list[Content] = []
        for _step, call, result in self._steps:
            for block in tool_step_blocks(call.name, call.arguments, result,
                                          expanded=self.reasoning_shown):
                lines.append(block.first + block.content)
        box.update(Content("\n").join(lines))

    def toggle_reasoning(self) -> bool:
        """Show or hide the reasoning and tool calls so far; False when there are none yet."""
        if self._reasoning is None and not self._steps:
            return False
        self.reasoning_shown = not self.reasoning_shown
        if self._reasoning is not None:
            self.set_reasoning(*self._reasoning[:3], done=self._reasoning[3])
        if self._steps:
            self.set_steps(self._steps)
        return True

    async def freeze(self, source: str, ansi: bool) -> None:
        """Freeze the tail (whose text is ``source``) and start it again after it."""
        tail = self.tail
        blocks, count = parse_blocks(source, first_number=tail.first_number, ansi=ansi)
        groups = [child for child in self.children if isinstance(child, FrozenGroup)]
        segment = FrozenSegment(blocks)
        frozen_lines = segment.render().get_height(RulesMap(), tail.size.width) \
            if tail.size.width else 0
        with self.app.batch_update():
            if groups and len(groups[-1].children) < FrozenGroup.SIZE:
                await groups[-1].mount(segment)
            else:
                if groups:
                    await self._merge(groups[-1])
                await self.mount(FrozenGroup(segment), before=tail)
            tail.restart(tail.first_number + count, room=max(0, tail.room - frozen_lines))

    async def _merge(self, group: FrozenGroup) -> None:
        """Replace a full group by one segment holding all its blocks."""
        blocks: list[Block] = []
        for segment in group.query_children(FrozenSegment).results(FrozenSegment):
            if blocks and segment.blocks:
                first = segment.blocks[0]
                blocks.append(replace(first, top=max(first.top, blocks[-1].bottom)))
                blocks.extend(segment.blocks[1:])
            else:
                blocks.extend(segment.blocks)
        await self.mount(FrozenSegment(blocks), before=group)
        await group.remove()

    @property
    def text(self) -> str:
        return self.message.content
