"""The text of a streamed reply costs what changed, not the whole reply.

``LiveBody`` alone in a small host app: a frame repaints only the lines that differ from the
last one (a style change on the same text included), the height grows several lines at a
time so most frames need no layout of the screen, freezing a stretch keeps the height and the
lines drawn, and what is drawn is always the Markdown rendering of the text so far.
"""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.geometry import Region

from tests.app_fixtures import pilot_test
from tui.app.widgets.markdown_lite import BlocksVisual, parse_blocks
from tui.app.widgets.message_view import LiveBody, LiveReply, MessageView
from tui.store import StoredMessage


class _Host(App[None]):
    native_ansi_color = False

    def compose(self) -> ComposeResult:
        yield LiveBody()


class _Refreshes:
    """The body's refresh calls: (regions, layout)."""

    def __init__(self, body: LiveBody) -> None:
        self.calls: list[tuple[tuple[Region, ...], bool]] = []
        self._refresh = body.refresh

        def recording(*regions: Region, **kwargs: Any) -> Any:
            self.calls.append((regions, bool(kwargs.get("layout"))))
            return self._refresh(*regions, **kwargs)

        body.refresh = recording  # type: ignore[method-assign]

    @property
    def layouts(self) -> int:
        return sum(layout for _regions, layout in self.calls)


def _drawn(body: LiveBody) -> list[str]:
    """The text of every line the body draws now."""
    return [body.render_line(y).text.rstrip() for y in range(body.size.height)]


def _screen_lines(app: App[None]) -> list[str]:
    """What the terminal shows, line by line."""
    width, height = app.size
    return [app.screen._compositor.render_strips()[y].text for y in range(height)] \
        if width else []


def _expected(source: str, width: int) -> list[str]:
    blocks, _ = parse_blocks(source)
    return [line.plain.rstrip() for line in BlocksVisual(blocks).lines(width)]


@pilot_test
async def test_a_frame_repaints_only_the_lines_that_changed() -> None:
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        body = app.query_one(LiveBody)
        source = "First paragraph, done.\n\nSecond paragraph, still"
        body.show(source)
        await pilot.pause()
        refreshes = _Refreshes(body)
        body.show(source + " growing")
        await pilot.pause()
        assert len(refreshes.calls) == 1
        regions, layout = refreshes.calls[0]
        assert not layout
        assert [(r.y, r.height) for r in regions] == [(2, 1)]  # the line that grew, alone
        assert _drawn(body)[:3] == _expected(source + " growing", body.size.width)


@pilot_test
async def test_the_same_text_in_another_style_is_repainted() -> None:
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        body = app.query_one(LiveBody)
        body.show("call it now")
        await pilot.pause()
        before = body.render_line(0)
        refreshes = _Refreshes(body)
        body.show("call `it` now")  # the same text once drawn: "it" as inline code
        await pilot.pause()
        assert refreshes.calls and refreshes.calls[0][0]
        after = body.render_line(0)
        assert after.text == before.text
        assert list(after) != list(before)  # the styles differ


@pilot_test
async def test_the_height_grows_in_steps_and_never_hides_text() -> None:
    app = _Host()
    async with app.run_test(size=(60, 24)) as pilot:
        body = app.query_one(LiveBody)
        refreshes = _Refreshes(body)
        source = ""
        for n in range(1, 31):
            source += f"line {n} of a poem\n"
            body.show(source)
            await pilot.pause()
            expected = _expected(source, body.size.width)
            assert body.size.height >= len(expected)
            assert _drawn(body)[:len(expected)] == expected
        step = body._step()
        assert step >= LiveBody.RESERVE
        assert refreshes.layouts <= 30 // step + 1, refreshes.layouts
        assert body.size.height - 30 < step  # blank room below the text stays under a step


class _ReplyHost(App[None]):
    native_ansi_color = False

    def compose(self) -> ComposeResult:
        yield LiveReply(StoredMessage(id="r", role="assistant", content="", created=0.0,
                                      model="m", status="partial"))


async def _freeze_then_show(pilot: Any, reply: LiveReply, done: str, rest: str) -> None:
    """Stream ``done``, freeze it, then stream ``rest`` after it."""
    reply.body.show(done)
    await pilot.pause()
    reply.freeze(done, ansi=False)
    reply.body.show(rest)
    await pilot.pause()


@pilot_test
async def test_freezing_a_stretch_keeps_the_height_and_the_lines_drawn() -> None:
    """The frozen lines stay where they were, rendered once, and their room passes to the
    new live end: no layout of the screen, no line rendered again but those that changed."""
    app = _ReplyHost()
    async with app.run_test(size=(60, 30)) as pilot:
        reply = app.query_one(LiveReply)
        body = reply.body
        done = "".join(f"Paragraph {n} is finished.\n\n" for n in range(6))
        body.show(done + "And the next one")
        await pilot.pause()
        rest = "And the next one\nhas\nfive\nshort\nlines"
        body.show(done + rest)  # within the room kept: the height stays
        await pilot.pause()
        height = reply.size.height
        kept = {y: body.render_line(y) for y in range(11)}  # the paragraphs, drawn
        refreshes = _Refreshes(body)
        reply.freeze(done, ansi=False)
        body.show(rest)
        await pilot.pause()
        assert body.frozen
        assert refreshes.layouts == 0
        assert reply.size.height == height
        assert all(body.render_line(y) is kept[y] for y in range(11))  # not rendered again
        # as the whole text would be drawn: the paragraphs, a blank line, the next one
        assert _drawn(body)[:17] == _expected(done + rest, body.size.width)


@pilot_test
async def test_a_code_block_after_a_freeze_carries_on_the_numbering() -> None:
    app = _ReplyHost()
    async with app.run_test(size=(60, 40)) as pilot:
        reply = app.query_one(LiveReply)
        done = "```python\nx = 1\n```\n\nThen:\n\n"
        await _freeze_then_show(pilot, reply, done, "```python\ny = 2\n```\n")
        shown = "\n".join(_drawn(reply.body))
        assert "[1] python" in shown and "[2] python" in shown
        assert shown.index("x = 1") < shown.index("Then:") < shown.index("y = 2")


@pilot_test
async def test_a_new_width_draws_the_frozen_lines_again() -> None:
    app = _ReplyHost()
    async with app.run_test(size=(60, 40)) as pilot:
        reply = app.query_one(LiveReply)
        done = "word " * 30 + "\n\n"
        await _freeze_then_show(pilot, reply, done, "the end")
        await pilot.resize_terminal(40, 40)
        await pilot.pause()
        width = reply.body.size.width
        expected = _expected(done + "the end", width)
        assert _drawn(reply.body)[:len(expected)] == expected


@pilot_test
async def test_the_reply_renders_no_lines_of_its_own(monkeypatch: Any) -> None:
    """The reply only holds widgets: a frame where it grows must not render its whole height
    as blank lines under them (what Textual's ``Widget.render_line`` does for a container
    whose size changed)."""
    rendered: list[str] = []
    original = LiveReply._render_content

    def counting(self: Any) -> None:
        rendered.append(type(self).__name__)
        original(self)

    monkeypatch.setattr(LiveReply, "_render_content", counting)
    app = _ReplyHost()
    async with app.run_test(size=(60, 30)) as pilot:
        reply = app.query_one(LiveReply)
        for n in range(4):
            stretch = "".join(f"Paragraph {n}.{k} is finished.\n\n" for k in range(3))
            reply.body.show(stretch)
            await pilot.pause()
            reply.freeze(stretch, ansi=False)
        reply.body.show("And the last one")
        await pilot.pause()
        assert rendered == []
        screen = "\n".join(_screen_lines(app))
        assert "Paragraph 3.2 is finished." in screen
        assert "And the last one" in screen


class _BothHost(App[None]):
    native_ansi_color = False
    TEXT = ("Giraffes are large land animals with a long neck that allows them to reach high "
            "into trees, found in many parts of the world. " * 3 + "\n\n- one\n- two\n")

    def compose(self) -> ComposeResult:
        yield MessageView(StoredMessage(id="v", role="assistant", content=self.TEXT,
                                        created=0.0, model="m", status="done"))
        yield LiveReply(StoredMessage(id="r", role="assistant", content="", created=0.0,
                                      model="m", status="partial"))


@pilot_test
async def test_the_live_text_wraps_as_the_finished_message_will() -> None:
    """The reply does not reflow when it ends and becomes a finished message: the live text
    is as wide as the finished one."""
    app = _BothHost()
    async with app.run_test(size=(67, 40)) as pilot:
        live = app.query_one(LiveReply)
        live.body.show(_BothHost.TEXT)
        await pilot.pause()
        view = app.query_one(MessageView)
        finished = [text for y in range(view.size.height)
                    if (text := view.render_line(y).text.strip())]
        drawn = [line.strip() for line in _drawn(live.body) if line.strip()]
        assert len(drawn) == 8  # the paragraph on six lines, the list
        start = finished.index(drawn[0])
        assert finished[start:start + len(drawn)] == drawn


@pilot_test
async def test_a_new_theme_redraws_the_frozen_lines() -> None:
    app = _ReplyHost()
    async with app.run_test(size=(60, 30)) as pilot:
        app.theme = "textual-dark"
        reply = app.query_one(LiveReply)
        done = "Some `code` and **bold** words.\n\n"
        await _freeze_then_show(pilot, reply, done, "more")
        before = list(reply.body.render_line(0))
        app.theme = "textual-light"
        await pilot.pause()
        after = list(reply.body.render_line(0))
        assert [s.text for s in after] == [s.text for s in before]
        assert [s.style for s in after] != [s.style for s in before]
