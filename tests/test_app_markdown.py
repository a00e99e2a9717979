"""The one-widget Markdown renderer, segment cuts, and a long reply streamed in segments."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import chat, make_app, pilot_test, rendered, send, wait_for, wait_idle
from tui.app.bench_ui import reply_tokens
from tui.app.widgets.markdown_lite import BlocksVisual, parse_blocks, segment_cut
from tui.app.widgets.message_view import LiveReply, code_blocks
from tui.config import Settings
from tui.engine.scripted import ScriptedEngine

DOC = """# Title

Some *intro* with `code` and **bold** text that is long enough to wrap at forty columns.

1. First item
2. Second item that is long enough to wrap under its own text
   - nested bullet

```python
def f(x):
    return x
```

> quoted

| a | b |
|---|---|
| 1 | 22 |

---
Done.
"""


def lines(source: str, width: int = 40) -> list[str]:
    blocks, _count = parse_blocks(source)
    return [line.plain for line in BlocksVisual(blocks).lines(width)]


def test_lite_renderer_blocks() -> None:
    out = lines(DOC)
    assert out[0].strip() == "Title" and out[0].startswith(" ")  # h1 centred
    assert "Some intro with code and bold text" in out[2]
    assert "1. First item" in out
    wrapped = out.index("2. Second item that is long enough to")
    assert out[wrapped + 1].startswith("   wrap")  # hanging indent under the text
    assert "   ▪ nested bullet" in out
    assert " [1] python" in out
    assert "  def f(x):" in out and "      return x" in out
    assert "▌ quoted" in out
    assert "a │ b " in out and "1 │ 22" in out
    assert "─" * 40 in out
    assert out[-1] == "Done."
    blocks, count = parse_blocks(DOC, first_number=4)
    assert count == 1
    assert " [4] python" in [line.plain for line in BlocksVisual(blocks).lines(40)]


def test_code_blocks_match_the_numbers_shown() -> None:
    assert code_blocks(DOC) == ["def f(x):\n    return x"]
    assert code_blocks("a\n\n```\none\n```\n\n- x\n\n  ```sh\n  two\n  ```\n") == ["one", "two"]


def test_segment_cut() -> None:
    long = "para\n\n" * 10
    assert segment_cut("", "short\n\ntext", 12) is None
    assert segment_cut(long, "next para\n", 12) == 0
    assert segment_cut(long, "x\n\ny\n\nz", 12) == len("x\n\ny\n\n")  # the last cut
    # never inside a code fence, nor before an indented (continuation) line
    assert segment_cut("```\n" + long, "code\n", 12) is None
    assert segment_cut(long, "   continued\n", 12) is None
    # text after a cut parses the same on its own
    text = "".join(reply_tokens(800))
    cut = segment_cut("", text, 12)
    assert cut is not None
    assert code_blocks(text) == code_blocks(text[:cut]) + code_blocks(text[cut:])


@pilot_test
async def test_long_reply_streams_in_frozen_segments(tmp_path: Path) -> None:
    tokens = reply_tokens(1200)
    text = "".join(tokens)
    engine = ScriptedEngine(tokens=tokens, delay_s=0.002)
    app = make_app(tmp_path, engine=engine, settings=Settings(max_tokens=5000))
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "long please", wait=False)
        pane = chat(app).pane
        await wait_for(pilot, lambda: bool(pane.query(LiveReply)), timeout=30)
        live = pane.query_one(LiveReply)
        await wait_for(pilot, lambda: bool(live.body.frozen), timeout=30)
        # code blocks in the live end carry on the numbering of the frozen part
        await wait_for(pilot, lambda: live.body.first_number > 1, timeout=30)
        await wait_idle(pilot, timeout=60)
        assert not pane.query(LiveReply)
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.content == text and reply.status == "done"
        view = pane.log_view.views()[-1]
        shown = rendered(view, 100)
        count = len(code_blocks(text))
        assert f"[{count}] python" in shown
        await pilot.press("f4", "ctrl+g")
        app.screen.query_one("Input").value = str(count)  # type: ignore[attr-defined]
        await pilot.press("enter")
        assert app.clipboard == code_blocks(text)[-1]


POEM = ("I stand at the edge\nof the abyss,\nthe waves crash\n\n"
        "```text\nkeep\nthese\n```\n\n- one\n- two\n")


def test_single_line_breaks_are_kept() -> None:
    out = lines(POEM)
    assert out[:3] == ["I stand at the edge", "of the abyss,", "the waves crash"]
    assert "  keep" in out and "  these" in out  # the code block as it was
    assert "• one" in out and "• two" in out  # a list stays a list
    assert code_blocks(POEM) == ["keep\nthese"]


@pilot_test
async def test_live_reply_keeps_single_line_breaks(tmp_path: Path) -> None:
    """While the reply streams (the live end), the lines are the model's lines too."""
    engine = ScriptedEngine(tokens=["Roses are red,\n", "violets are blue\n"] + ["."] * 400,
                            delay_s=0.01)
    app = make_app(tmp_path, engine=engine, settings=Settings(max_tokens=5000))
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "a poem", wait=False)
        pane = chat(app).pane
        await wait_for(pilot, lambda: bool(pane.query(LiveReply)))
        live = pane.query_one(LiveReply)
        await wait_for(pilot, lambda: "violets" in live.body.source, timeout=10)
        await pilot.pause(0.2)
        shown = [line.plain.strip() for line in live.body.render().lines(90)]
        assert shown[:2] == ["Roses are red,", "violets are blue"]
        pane.stop()
        await wait_idle(pilot)
