"""Tool calls on the real default model (SmolLM2, whose template has no tool support): a forced
call is schema-valid on every seed, and the session's loop runs it and answers."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import jsonschema
import pytest

from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, Done, SamplingParams, ToolCallDelta, ToolSpec
from tui.session.choice import ResolvedModel
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.request import BuiltPrompt, for_prompt
from tui.session.turn import ToolUse, run_turn
from tui.store import LocalModel, ToolResultPart
from tui.tools.builtin import calculator_tool

QUESTION = [ChatMessage("user", "What is 17 times 23? Use the calculator.")]
WEATHER = ToolSpec("get_weather", "The weather in a city.", json.dumps({
    "type": "object", "properties": {"city": {"type": "string"},
                                     "days": {"type": "integer"},
                                     "unit": {"enum": ["c", "f"]}},
    "required": ["city", "days", "unit"]}))


@pytest.mark.timeout(1500)
def test_a_forced_call_has_schema_valid_arguments_on_20_of_20_seeds(
        smollm_engine: Any) -> None:
    calculator = calculator_tool().spec()
    tools = [calculator, WEATHER]
    for seed in range(20):
        name = "calculator" if seed % 2 else "get_weather"
        choice = name if seed % 4 < 2 else "required"
        events = list(smollm_engine.generate(
            QUESTION, SamplingParams(temperature=0.8, max_tokens=96, seed=seed),
            tools=tools, tool_choice=choice))
        done = events[-1]
        assert isinstance(done, Done) and done.error is None, (seed, done)
        assert done.stats.stop_reason == "tool_calls", (seed, done.text)
        assert len(done.tool_calls) == 1, (seed, done.text)
        call = done.tool_calls[0]
        if choice != "required":
            assert call.name == name
        spec = next(t for t in tools if t.name == call.name)
        jsonschema.validate(json.loads(call.arguments), json.loads(spec.parameters))
        deltas = [e for e in events if isinstance(e, ToolCallDelta)]
        assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
            (0, call.id, call.name, call.arguments)]


def test_a_model_without_tool_support_says_so_when_it_may_choose(smollm_engine: Any) -> None:
    with pytest.raises(EngineError, match="chat template has no tool support"):
        list(smollm_engine.generate(QUESTION, SamplingParams(max_tokens=8),
                                    tools=[calculator_tool().spec()]))
    with pytest.raises(EngineError, match=r"'clock'.*calculator"):
        list(smollm_engine.generate(QUESTION, SamplingParams(max_tokens=8),
                                    tools=[calculator_tool().spec()], tool_choice="clock"))
    done = list(smollm_engine.generate(QUESTION, SamplingParams(max_tokens=8),
                                       tools=[calculator_tool().spec()], tool_choice="none"))[-1]
    assert isinstance(done, Done) and done.error is None and not done.tool_calls


class Sink:
    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.results: list[ToolResultPart] = []

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        pass

    def reasoning(self, text: str, n_tokens: int) -> None:
        pass

    def text(self, text: str, n_tokens: int) -> None:
        self.chunks.append(text)

    def tool_call(self, delta: ToolCallDelta) -> None:
        pass

    def tool_result(self, step: int, call: Any, result: ToolResultPart) -> None:
        self.results.append(result)


@pytest.mark.timeout(600)
def test_the_session_loop_runs_the_calculator_and_an_answer_follows(
        smollm_engine: Any, smollm: Any) -> None:
    session = ModelSession(lambda _p: smollm_engine)
    session.adopt(ResolvedModel(LocalModel(str(smollm), "smollm2"), str(smollm), "smollm2"),
                  smollm_engine, smollm_engine.info)
    ran: list[dict[str, Any]] = []
    calculator = calculator_tool()
    original = calculator.run

    def counted(args: dict[str, Any]) -> str:
        ran.append(args)
        return original(args)

    calculator = dataclasses.replace(calculator, run=counted)
    use = ToolUse([calculator], lambda call, tool: "once", choice="calculator")
    sink = Sink()
    request = for_prompt("What is 17 times 23? Use the calculator.",
                         SamplingParams(temperature=0.0, top_k=1, max_tokens=48, seed=1))
    outcome = run_turn(session, request, sink, threading.Event(), use)
    assert outcome.error is None, outcome.error
    assert len(ran) == 1 and isinstance(ran[0].get("expression"), str)
    [(call, result)] = outcome.steps
    assert call.name == "calculator" and result.approved
    assert sink.results == [result]
    # SmolLM2 cannot choose tools itself: the next round answers without them, with the
    # call and its result in the history, and says so in a note
    assert any("no tool support" in note for note in outcome.notes), outcome.notes
    assert outcome.done is not None and outcome.done.text.strip()
    assert not outcome.done.tool_calls
    assert "".join(sink.chunks).endswith(outcome.done.text)
