"""A thinking model in the app: the reasoning streams as one dim line, stays collapsed above the
answer, expands with a key, is stored apart and never resent; thinking can be turned off."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import chat, make_app, pilot_test, rendered, send, wait_for, wait_idle
from tui.app.widgets.message_view import LiveReply, MessageView
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.engine.scripted import ScriptedEngine
from tui.store import ReasoningPart, TextPart

THOUGHT = ("The user asks for a sum. Let me add the numbers one at a time, carefully, the way "
           "a teacher would, checking each step before going on to the next. Two plus two is "
           "four. I should answer briefly and clearly, with the number in bold.")
ANSWER = "Two plus two is **four**."


@pilot_test
async def test_reasoning_is_shown_collapsed_expanded_stored_and_not_resent(
        tmp_path: Path) -> None:
    engine = ScriptedEngine(ANSWER, reasoning=THOUGHT, delay_s=0.04)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "What is 2+2?", wait=False)
        pane = chat(app).pane
        # while it thinks: one dim line with the count, the reasoning itself not on screen
        await wait_for(pilot, lambda: pane.job is not None and pane.job.reasoning_tokens > 3)
        live = pane.log_view.views()[-1]
        assert isinstance(live, LiveReply)
        line = str(live.query_one(".msg-reasoning").render())
        assert line.startswith("thinking…") and "tokens" in line
        assert "Two plus two is four" not in line
        assert "Thinking" in str(pane.query_one("#chat-status").render())
        await wait_idle(pilot)
        # done: the answer, with a collapsed reasoning line above it
        view = pane.log_view.views()[-1]
        assert isinstance(view, MessageView)
        text = rendered(view, 90)
        assert "▸ thought for" in text and THOUGHT not in text
        assert text.index("▸ thought for") < text.index("Two plus two is four.")
        # the key expands it in full, and again collapses it
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert THOUGHT in " ".join(rendered(view, 200).replace("│", " ").split())
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert THOUGHT not in rendered(view, 200)
        # stored apart: content is the answer, the reasoning a part with its count
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.content == ANSWER
        assert reply.parts[0] == ReasoningPart(THOUGHT, len(engine.reasoning_tokens),
                                               reply.parts[0].seconds)
        assert reply.parts[1] == TextPart(ANSWER)
        assert reply.stats is not None and reply.stats["reasoning_tokens"] > 0
        # the monitor shows thinking and answer tokens apart (f12: the full panel at 100 columns)
        await pilot.press("f12")
        await pilot.pause()
        body = str(app.screen.query_one(MonitorPanel).query_one("#monitor-body").render())
        assert "think" in body and "answer" in body
        # the next turn does not send the reasoning back
        await send(pilot, "And 3+3?")
        history = engine.requests[-1]
        assistant = [m for m in history if m.role == "assistant"]
        assert [m.content for m in assistant] == [ANSWER]
        assert all(THOUGHT not in m.content for m in history)


@pilot_test
async def test_thinking_off_for_a_conversation(tmp_path: Path) -> None:
    engine = ScriptedEngine(ANSWER, reasoning=THOUGHT)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+r")
        cid = chat(app).meta.id
        assert app.store.get_conversation(cid).options.reasoning_budget == 0
        await send(pilot, "What is 2+2?")
        assert engine.samplings[-1].reasoning_budget == 0
        reply = app.store.messages(cid)[-1]
        assert reply.content == ANSWER and reply.parts == ()
        await pilot.press("alt+r")  # and on again: the model's default
        assert app.store.get_conversation(cid).options.reasoning_budget is None
        await send(pilot, "Again?")
        assert engine.samplings[-1].reasoning_budget == -1
        assert app.store.messages(cid)[-1].reasoning == THOUGHT


@pilot_test
async def test_a_stopped_thinking_reply_keeps_its_reasoning(tmp_path: Path) -> None:
    long_thought = " ".join(f"step{i}" for i in range(400))
    engine = ScriptedEngine(ANSWER, reasoning=long_thought, delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "Think hard", wait=False)
        pane = chat(app).pane
        await wait_for(pilot, lambda: pane.job is not None and pane.job.reasoning_tokens > 20)
        await pilot.press("escape")
        await wait_idle(pilot)
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.status == "stopped" and reply.content == ""
        assert reply.reasoning and long_thought.startswith(reply.reasoning.strip())
        assert "▸ thought for" in rendered(pane.log_view.views()[-1], 90)
