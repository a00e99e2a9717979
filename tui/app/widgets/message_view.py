"""Messages in the chat log.

- ``MessageView``: a finished message, drawn by one widget (role, Markdown body, figures).
- ``LiveReply``: the reply being streamed. Its text (``LiveBody``) is one widget drawing the
  same Markdown rendering: the live end re-parsed at each update; once it holds a dozen lines
  and reaches a block boundary, it is frozen (its lines are kept as they are drawn) and the
  live end starts again. So the work per update stays flat however long the reply grows, and
  an update repaints the lines that changed, not a tree of Markdown block widgets mounted and
  restyled. When the reply ends, the whole of it becomes a ``MessageView`` (what reopening the
  conversation shows).
"""

from __future__ import annotations

from typing import Any, cast

from markdown_it import MarkdownIt
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
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
    every frame where the reply grew by a line.

    Nor the repaint Textual queues for the widget's old size when it changes: the layout
    pass under way repaints the widget's new region whole, and the old region, left queued,
    was repainted again at the next frame (most of the chat log's height, for nothing)."""
    changed = Widget._size_updated(widget, size, virtual_size, container_size, layout=False)
    if changed:
        widget._repaint_regions.clear()
    return changed


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


class LiveBody(Widget):
    """The text of the reply being streamed, in one widget: the frozen stretches, drawn as
    they were when they were frozen, then the live end, the part that may still change, its
    Markdown parsed again at each update (a dozen lines or so: the caller freezes what is
    done) and drawn line by line. Code blocks are numbered from ``first_number``.

    A frame costs what changed, not the whole reply: only the lines that differ from the last
    frame are rendered and repainted, a frozen line never again, freezing mounts nothing, and
    the height grows half a log's height at a time (the text fills blank lines below it), so
    most frames need no layout of the screen, the pass that moves every widget of the chat
    log and redraws the whole terminal."""

    RESERVE = 4
    """Lines the height grows by when the text outgrows it, at least."""

    DEFAULT_CSS = """
    LiveBody {
        height: auto;
        padding: 0 0 0 1;  /* as wide as the finished message's text: no reflow at the end */
    }
    """

    def __init__(self, *, first_number: int = 1) -> None:
        super().__init__()
        self.first_number = first_number
        self.source = ""
        """The live end's text (what follows the frozen stretches)."""
        self.frozen: list[BlocksVisual] = []
        """The frozen stretches, in order."""
        self._highlighter = ChunkedHighlighter()
        self._visual = BlocksVisual([])
        self._frozen_lines: list[Content] = []
        self._lines: list[Content] = []
        """The live end's lines, drawn below the frozen ones."""
        self._width = 0
        self._strips: dict[int, Strip] = {}
        self._reserved = 0
        """The height kept: the text's lines and blank room below them for the next ones."""
        self._laid_out = 0

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated_once(self, size, virtual_size, container_size)

    def show(self, source: str) -> None:
        """Draw ``source`` (the live end's whole text so far) after the frozen stretches."""
        self.source = source
        blocks, _count = parse_blocks(source, first_number=self.first_number,
                                      ansi=self.app.native_ansi_color,
                                      highlighter=self._highlighter)
        self._visual = BlocksVisual(blocks)
        width = self.size.width
        if not width or width != self._width:
            self._relayout()
            return
        self._redraw(self._visual.lines(width))

    def freeze(self, blocks: list[Block], count: int) -> None:
        """The live end is done up to a block boundary: ``blocks`` (holding ``count`` code
        blocks) are drawn for good, and the live end starts again, empty, after them. The
        lines that read the same as a moment ago keep their rendering, and the height stays
        (the blank room below passes to the new live end)."""
        visual = BlocksVisual(blocks, trailing=blocks[-1].bottom if blocks else 0)
        self.frozen.append(visual)
        self.first_number += count
        self._highlighter.clear()
        self.source = ""
        self._visual = BlocksVisual([])
        width = self._width
        if not width:
            self._relayout()
            return
        done = visual.lines(width)
        self._redraw(done)  # drawn where the live end was, the same as any frame
        self._frozen_lines.extend(done)
        self._lines = []

    def _redraw(self, new: list[Content]) -> None:
        """The live end becomes ``new``: forget the lines that changed, repaint them, and
        lay the screen out again only when the height kept must grow (or shrink a lot)."""
        width = self._width
        base = len(self._frozen_lines)
        old = self._lines
        first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False))
                      if not same_content(a, b)), min(len(old), len(new)))
        end = max(len(old), len(new))
        for y in range(base + first, base + end):
            self._strips.pop(y, None)
        self._lines = new
        total = base + len(new)
        if total > self._reserved or total < self._reserved - 2 * self._step():
            self._reserved = total + self._step() - 1 if total else 0
        if self._reserved != self._laid_out:
            self._laid_out = self._reserved
            self.refresh(layout=True)
        elif end > first:
            self.refresh(Region(0, base + first, width, end - first))

    def _relayout(self) -> None:
        """Everything again (the first update, a new width)."""
        self._wrap(self.size.width)
        total = len(self._frozen_lines) + len(self._lines)
        self._reserved = total + self._step() - 1 if total else 0
        self._laid_out = self._reserved
        self.refresh(layout=True)

    def _wrap(self, width: int) -> None:
        """The lines (frozen and live) at ``width``, none of them rendered yet."""
        self._width = width
        self._frozen_lines = [line for visual in self.frozen for line in visual.lines(width)] \
            if width else []
        self._lines = self._visual.lines(width) if width else []
        self._strips.clear()

    def _step(self) -> int:
        """Lines the height grows by: half the chat log's height (the text moves up half a
        page when it reaches the bottom), ``RESERVE`` at least. Each growth lays out the
        screen and repaints the whole log (about 20 ms on a slow 2-core machine): with a
        quarter of the screen, a list streaming 13 lines a second paid it more than once a
        second."""
        viewport = next((node.scrollable_content_region.height for node in self.ancestors
                         if isinstance(node, ScrollableContainer)), self.app.size.height)
        return max(self.RESERVE, viewport // 2)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # another theme: the lines kept were drawn in the old one

    @property
    def text_lines(self) -> int:
        """Lines of text drawn (frozen and live), at the width laid out."""
        return len(self._frozen_lines) + len(self._lines)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if not width:
            return 0
        if width != self._width:
            lines = sum(len(visual.lines(width)) for visual in self.frozen) \
                + len(self._visual.lines(width))
        else:
            lines = self.text_lines
        return max(lines, self._reserved)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._width:
            self._wrap(width)
        strip = self._strips.get(y)
        if strip is None:
            base = len(self._frozen_lines)
            line = self._frozen_lines[y] if y < base else (
                self._lines[y - base] if y - base < len(self._lines) else None)
            if line is not None:
                # the line alone, without Visual.to_strips' link and selection passes: their
                # style lookups cost more than the line (a reply's links are not clickable)
                options = RenderOptions(self._get_style, cast("RulesMap", self.styles))
                strip = line.render_strips(width, 1, self.visual_style, options)[0]
            else:
                strip = Strip.blank(width, self.visual_style.rich_style)
            self._strips[y] = strip
        return strip

    def render(self) -> BlocksVisual:
        """The live end's rendering (what ``show`` was given, as Markdown)."""
        return self._visual


class LiveReply(MessageWidget):
    """The reply being written: its text (frozen stretches and a live end), a progress
    line."""

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
        self.body = LiveBody()
        self.reasoning_shown = False
        self._reasoning: tuple[str, int, float, bool] | None = None
        self._steps: list[tuple[int, ToolCall, ToolResultPart]] = []

    def compose(self) -> ComposeResult:
        yield Static(_("assistant"), classes="msg-role", markup=False)
        yield Static(classes="msg-reasoning", markup=False)
        yield Static(classes="msg-tools", markup=False)
        yield self.body
        model = self.message.model or ""
        yield Static(Content(_("{model} · waiting for the first token…",
                               model=model).lstrip(" ·")),
                     classes="msg-meta")

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated_once(self, size, virtual_size, container_size)

    def render_line(self, y: int) -> Strip:
        """Blank (the children are drawn over it). Textual's ``Widget.render_line`` renders a
        container's whole content area once it is dirty: at each frame where the reply grew,
        every line of the reply rendered as blanks."""
        return Strip.blank(self.size.width, self.visual_style.rich_style)

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

    def freeze(self, source: str, ansi: bool) -> None:
        """Freeze the live end (whose text is ``source``) and start it again after it."""
        blocks, count = parse_blocks(source, first_number=self.body.first_number, ansi=ansi)
        self.body.freeze(blocks, count)

    @property
    def text(self) -> str:
        return self.message.content
