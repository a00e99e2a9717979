"""Tools in the app: the approval above the prompt (once, always, deny), the calls shown under
the reply, the step count, and a denied call that never runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app_fixtures import chat, make_app, pilot_test, rendered, send, wait_for, wait_idle
from tui.app.screens.tools import ToolsScreen
from tui.app.widgets.tool_approval import ToolApproval
from tui.engine.protocol import ToolCall
from tui.engine.scripted import ScriptedEngine
from tui.store import ToolCallPart, ToolResultPart
from tui.tools import Tool, ToolBox, ToolConfig

CALL = ToolCall("call-1", "lookup", '{"word": "lmdesk"}')


class RecordingBox(ToolBox):
    """A toolbox whose one tool records each run (so a denied call is seen not to run)."""

    def __init__(self, ran: list[dict[str, Any]]) -> None:
        super().__init__(ToolConfig())
        self.ran = ran

    def resolve(self, enabled: Any) -> tuple[list[Tool], list[str]]:
        def run(args: dict[str, Any]) -> str:
            self.ran.append(args)
            return "a terminal workstation"

        return [Tool("lookup", "Look a word up.", {"type": "object"}, run)], []


def _app(tmp_path: Path, steps: int, ran: list[dict[str, Any]]) -> Any:
    engine = ScriptedEngine("lmdesk is a terminal workstation.", tool_steps=[[CALL]] * steps,
                            delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    app.tool_box = lambda meta: RecordingBox(ran)  # type: ignore[method-assign]
    return app, engine


async def _enable_tools(app: Any, pilot: Any) -> None:
    await wait_idle(pilot)
    cid = chat(app).meta.id
    new = app.store.update_options(cid, tools=("calc",))
    app.conversation_options_changed(cid, new.options)


@pilot_test
async def test_allow_once_runs_the_call_and_shows_it_under_the_reply(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []
    app, _engine = _app(tmp_path, 1, ran)
    async with app.run_test(size=(110, 34)) as pilot:
        await _enable_tools(app, pilot)
        await send(pilot, "What is lmdesk?", wait=False)
        approval = chat(app).pane.query_one(ToolApproval)
        await wait_for(pilot, lambda: approval.request is not None)
        text = str(approval.render())
        assert "lookup" in text and '"word": "lmdesk"' in text and "y allow once" in text
        assert "asks to run lookup" in str(chat(app).pane.query_one("#chat-status").render())
        assert approval.has_focus
        await pilot.press("y")
        await wait_idle(pilot)
        assert ran == [{"word": "lmdesk"}]
        assert chat(app).pane.prompt.has_focus  # the cursor is back where the user types
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.content == "lmdesk is a terminal workstation."
        assert [type(p) for p in reply.parts[:2]] == [ToolCallPart, ToolResultPart]
        view = chat(app).pane.log_view.views()[-1]
        line = next(r for r in rendered(view, 100).splitlines() if "lookup" in r)
        assert line.strip().startswith("▸ lookup") and "a terminal workstation" in line
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert "arguments: " in rendered(view, 100)


@pilot_test
async def test_deny_never_runs_the_tool(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []
    app, engine = _app(tmp_path, 1, ran)
    async with app.run_test(size=(110, 34)) as pilot:
        await _enable_tools(app, pilot)
        await send(pilot, "What is lmdesk?", wait=False)
        approval = chat(app).pane.query_one(ToolApproval)
        await wait_for(pilot, lambda: approval.request is not None)
        await pilot.press("n")
        await wait_idle(pilot)
        assert ran == []
        assert "did not allow" in engine.requests[-1][-1].content
        reply = app.store.messages(chat(app).meta.id)[-1]
        result = next(p for p in reply.parts if isinstance(p, ToolResultPart))
        assert result.approved is False
        assert "denied" in rendered(chat(app).pane.log_view.views()[-1], 100)


@pilot_test
async def test_always_stops_asking_and_is_kept(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []
    app, _engine = _app(tmp_path, 2, ran)
    async with app.run_test(size=(110, 34)) as pilot:
        await _enable_tools(app, pilot)
        await send(pilot, "What is lmdesk?", wait=False)
        approval = chat(app).pane.query_one(ToolApproval)
        await wait_for(pilot, lambda: approval.request is not None)
        await pilot.press("a")
        await wait_idle(pilot)
        assert len(ran) == 2  # the second call ran without asking
        assert "lookup" in app.always_allowed_tools()
        assert app.store.get_setting("tools.always_allow") == ["lookup"]


@pilot_test
async def test_stopping_while_asked_denies_and_keeps_the_chat(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []
    app, _engine = _app(tmp_path, 1, ran)
    async with app.run_test(size=(110, 34)) as pilot:
        await _enable_tools(app, pilot)
        await send(pilot, "What is lmdesk?", wait=False)
        approval = chat(app).pane.query_one(ToolApproval)
        await wait_for(pilot, lambda: approval.request is not None)
        chat(app).pane.stop()
        await wait_idle(pilot)
        assert ran == [] and approval.request is None
        assert app.is_running


@pilot_test
async def test_the_tools_screen_enables_tools_for_the_conversation(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+x")
        await wait_for(pilot, lambda: isinstance(app.screen, ToolsScreen))
        await pilot.press("space")  # the first row: calc
        cid = chat(app).meta.id
        assert app.store.get_conversation(cid).options.tools == ("calc",)
        await pilot.press("a")  # the calculator runs without asking from now on
        assert "calculator" in app.always_allowed_tools()
        await pilot.press("space")
        assert app.store.get_conversation(cid).options.tools == ()
        await pilot.press("escape")
