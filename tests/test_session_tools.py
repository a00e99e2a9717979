"""The tool loop: model -> calls -> approval -> run -> results -> model, in the shared turn."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tui.config import Settings
from tui.engine.protocol import SamplingParams, ToolCall, ToolCallDelta
from tui.engine.scripted import ScriptedEngine
from tui.prompting.context import tool_steps
from tui.session.choice import ResolvedModel
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.request import BuiltPrompt, for_prompt
from tui.session.turn import DENIED, ToolUse, run_turn
from tui.store import LocalModel, Store, TextPart, ToolCallPart, ToolResultPart
from tui.tools.base import Tool

CALL = ToolCall("call-1", "lookup", '{"word": "lmdesk"}')


class Sink:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.steps: list[tuple[int, str, bool]] = []

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        pass

    def reasoning(self, text: str, n_tokens: int) -> None:
        pass

    def text(self, text: str, n_tokens: int) -> None:
        self.texts.append(text)

    def tool_call(self, delta: ToolCallDelta) -> None:
        pass

    def tool_result(self, step: int, call: ToolCall, result: ToolResultPart) -> None:
        self.steps.append((step, call.name, result.approved))


def session_for(engine: ScriptedEngine) -> ModelSession:
    session = ModelSession(lambda _p: engine)
    session.adopt(ResolvedModel(LocalModel("x.gguf", "x"), "x.gguf", "x"), engine, engine.load())
    return session


def lookup_tool(ran: list[dict[str, Any]]) -> Tool:
    def run(args: dict[str, Any]) -> str:
        ran.append(args)
        return f"{args['word']} is a terminal workstation"

    return Tool("lookup", "Look a word up.", {"type": "object", "properties": {
        "word": {"type": "string"}}}, run)


def test_the_loop_runs_the_call_feeds_the_result_back_and_answers() -> None:
    engine = ScriptedEngine("It is a terminal workstation.", tool_steps=[[CALL]])
    ran: list[dict[str, Any]] = []
    asked: list[str] = []
    use = ToolUse([lookup_tool(ran)], lambda call, tool: asked.append(call.name) or "once")
    sink = Sink()
    request = for_prompt("What is lmdesk?", SamplingParams(max_tokens=50))
    outcome = run_turn(session_for(engine), request, sink, threading.Event(), use)
    assert outcome.error is None and outcome.text == "It is a terminal workstation."
    assert ran == [{"word": "lmdesk"}] and asked == ["lookup"]
    assert sink.steps == [(1, "lookup", True)]
    # the tools were offered both times; the second request carries the call and its result
    assert [choice for _tools, choice in engine.tool_requests] == ["auto", "auto"]
    second = engine.requests[-1]
    assert second[-2].role == "assistant" and second[-2].tool_calls == (CALL,)
    assert second[-1].role == "tool" and second[-1].tool_call_id == "call-1"
    assert "terminal workstation" in second[-1].content
    # the turn's parts: the call, its result, then the answer
    assert outcome.parts == (
        ToolCallPart("call-1", "lookup", CALL.arguments),
        ToolResultPart("call-1", "lookup", "lmdesk is a terminal workstation"),
        TextPart("It is a terminal workstation."),
    )
    assert outcome.tool_overhead_s >= 0.0


def test_a_denied_call_never_runs_and_the_model_is_told() -> None:
    engine = ScriptedEngine("I could not look it up.", tool_steps=[[CALL]])
    ran: list[dict[str, Any]] = []
    use = ToolUse([lookup_tool(ran)], lambda call, tool: "deny")
    outcome = run_turn(session_for(engine), for_prompt("What is lmdesk?", SamplingParams()),
                       Sink(), threading.Event(), use)
    assert ran == []
    assert engine.requests[-1][-1].content == DENIED
    assert outcome.steps[0][1].approved is False


def test_always_stops_asking_and_is_remembered() -> None:
    engine = ScriptedEngine("Done.", tool_steps=[[CALL], [CALL], [CALL]])
    ran: list[dict[str, Any]] = []
    asked: list[str] = []
    remembered: list[str] = []
    use = ToolUse([lookup_tool(ran)], lambda call, tool: asked.append(call.name) or "always",
                  on_always=remembered.append)
    run_turn(session_for(engine), for_prompt("go", SamplingParams()), Sink(),
             threading.Event(), use)
    assert len(ran) == 3 and asked == ["lookup"] and remembered == ["lookup"]


def test_the_step_limit_ends_a_model_that_never_stops_calling() -> None:
    engine = ScriptedEngine("never", tool_steps=[[CALL]] * 20)
    ran: list[dict[str, Any]] = []
    use = ToolUse([lookup_tool(ran)], lambda call, tool: "once", max_steps=3)
    outcome = run_turn(session_for(engine), for_prompt("go", SamplingParams()), Sink(),
                       threading.Event(), use)
    assert len(ran) == 3
    assert any("3 tool rounds" in n for n in outcome.notes)


def test_an_unknown_tool_and_a_failing_tool_are_results_not_crashes() -> None:
    def boom(args: dict[str, Any]) -> str:
        raise RuntimeError("kaput")

    calls = [ToolCall("a", "nosuch", "{}"), ToolCall("b", "boom", "{}"),
             ToolCall("c", "boom", "{bad json")]
    engine = ScriptedEngine("ok", tool_steps=[calls])
    use = ToolUse([Tool("boom", "", {"type": "object"}, boom)], lambda c, t: "once")
    outcome = run_turn(session_for(engine), for_prompt("go", SamplingParams()), Sink(),
                       threading.Event(), use)
    results = [r for _c, r in outcome.steps]
    assert "no tool called nosuch" in results[0].content
    assert results[1].error == "RuntimeError: kaput"
    assert "not valid JSON" in (results[2].error or "")
    assert outcome.text == "ok"


def test_an_engine_without_tool_support_answers_without_tools() -> None:
    engine = ScriptedEngine("plain answer")
    use = ToolUse([lookup_tool([])], lambda c, t: "once")
    outcome = run_turn(session_for(engine), for_prompt("go", SamplingParams()), Sink(),
                       threading.Event(), use)
    assert outcome.text == "plain answer" and outcome.error is None
    assert any("cannot call tools" in n for n in outcome.notes)


def test_a_stored_tool_turn_is_sent_back_as_calls_and_results(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("t")
        store.append_message(meta.id, "user", "What is lmdesk?")
        parts = (ToolCallPart("call-1", "lookup", CALL.arguments),
                 ToolResultPart("call-1", "lookup", "a workstation"),
                 TextPart("It is a workstation."))
        store.append_message(meta.id, "assistant", "It is a workstation.", parts=parts)
        reply = store.messages(meta.id)[1]
    sent = tool_steps(reply)
    assert [m.role for m in sent] == ["assistant", "tool", "assistant"]
    assert sent[0].tool_calls == (CALL,) and sent[1].content == "a workstation"
    assert sent[2].content == "It is a workstation."
    assert Settings().tools_always_allow == []
