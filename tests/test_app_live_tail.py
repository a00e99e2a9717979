"""The live end of a streamed reply costs what changed, not the whole tail.

``LiveTail`` alone in a small host app: a frame repaints only the lines that differ from the
last one (a style change on the same text included), the height grows several lines at a
time so most frames need no layout of the screen, and what is drawn is always the Markdown
rendering of the text so far.
"""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.geometry import Region

from tests.app_fixtures import pilot_test
from tui.app.widgets.markdown_lite import BlocksVisual, parse_blocks
from tui.app.widgets.message_view import FrozenSegment, LiveReply, LiveTail
from tui.store import StoredMessage


class _Host(App[None]):
    native_ansi_color = False

    def compose(self) -> ComposeResult:
        yield LiveTail()


class _Refreshes:
    """The tail's refresh calls: (regions, layout)."""

    def __init__(self, tail: LiveTail) -> None:
        self.calls: list[tuple[tuple[Region, ...], bool]] = []
        self._refresh = tail.refresh

        def recording(*regions: Region, **kwargs: Any) -> Any:
            self.calls.append((regions, bool(kwargs.get("layout"))))
            return self._refresh(*regions, **kwargs)

        tail.refresh = recording  # type: ignore[method-assign]

    @property
    def layouts(self) -> int:
        return sum(layout for _regions, layout in self.calls)


def _drawn(tail: LiveTail) -> list[str]:
    """The text of every line the tail draws now."""
    return [tail.render_line(y).text.rstrip() for y in range(tail.size.height)]


def _expected(source: str, width: int) -> list[str]:
    blocks, _ = parse_blocks(source)
    return [line.plain.rstrip() for line in BlocksVisual(blocks).lines(width)]


@pilot_test
async def test_a_frame_repaints_only_the_lines_that_changed() -> None:
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        tail = app.query_one(LiveTail)
        source = "First paragraph, done.\n\nSecond paragraph, still"
        tail.show(source)
        await pilot.pause()
        refreshes = _Refreshes(tail)
        tail.show(source + " growing")
        await pilot.pause()
        assert len(refreshes.calls) == 1
        regions, layout = refreshes.calls[0]
        assert not layout
        assert [(r.y, r.height) for r in regions] == [(2, 1)]  # the line that grew, alone
        assert _drawn(tail)[:3] == _expected(source + " growing", tail.size.width)


@pilot_test
async def test_the_same_text_in_another_style_is_repainted() -> None:
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        tail = app.query_one(LiveTail)
        tail.show("call it now")
        await pilot.pause()
        before = tail.render_line(0)
        refreshes = _Refreshes(tail)
        tail.show("call `it` now")  # the same text once drawn: "it" as inline code
        await pilot.pause()
        assert refreshes.calls and refreshes.calls[0][0]
        after = tail.render_line(0)
        assert after.text == before.text
        assert list(after) != list(before)  # the styles differ


@pilot_test
async def test_the_height_grows_in_steps_and_never_hides_text() -> None:
    app = _Host()
    async with app.run_test(size=(60, 24)) as pilot:
        tail = app.query_one(LiveTail)
        refreshes = _Refreshes(tail)
        source = ""
        for n in range(1, 31):
            source += f"line {n} of a poem\n"
            tail.show(source)
            await pilot.pause()
            expected = _expected(source, tail.size.width)
            assert tail.size.height >= len(expected)
            assert _drawn(tail)[:len(expected)] == expected
        step = tail._step()
        assert step >= LiveTail.RESERVE
        assert refreshes.layouts <= 30 // step + 1, refreshes.layouts
        assert tail.size.height - 30 < step  # blank room below the text stays under a step


@pilot_test
async def test_restart_drops_the_room_kept_below() -> None:
    app = _Host()
    async with app.run_test(size=(60, 24)) as pilot:
        tail = app.query_one(LiveTail)
        tail.show("one line")
        await pilot.pause()
        assert tail.size.height > 1  # room kept for the lines to come
        tail.restart(2)
        await pilot.pause()
        assert tail.size.height == 0


class _ReplyHost(App[None]):
    native_ansi_color = False

    def compose(self) -> ComposeResult:
        yield LiveReply(StoredMessage(id="r", role="assistant", content="", created=0.0,
                                      model="m", status="partial"))


@pilot_test
async def test_freezing_a_stretch_keeps_the_reply_s_height() -> None:
    """The frozen lines' room passes to the new tail: the reply does not shrink and grow
    again (two layouts of the screen) each time a stretch is frozen."""
    app = _ReplyHost()
    async with app.run_test(size=(60, 30)) as pilot:
        reply = app.query_one(LiveReply)
        done = "".join(f"Paragraph {n} is finished.\n\n" for n in range(6))
        reply.tail.show(done + "And the next one")
        await pilot.pause()
        rest = "And the next one\nhas\nfive\nshort\nlines"
        reply.tail.show(done + rest)  # within the room kept: the height stays
        await pilot.pause()
        height = reply.size.height
        await reply.freeze(done, ansi=False)
        reply.tail.show(rest)
        await pilot.pause()
        assert reply.query(FrozenSegment)
        assert reply.size.height == height
        assert _drawn(reply.tail)[:5] == rest.split("\n")
