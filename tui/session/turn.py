"""Running one turn: wait for the model, build the prompt, generate holding the session's
lock, and hand each piece (reasoning, answer text, tool calls) to a sink as it arrives.

The app's sink moves the pieces to the screen on a timer; ``lmdesk ask``'s writes them to the
terminal. Whoever calls ``run_turn`` does it from a thread it may block (a worker), and saves
what the outcome holds: the answer, its parts and figures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tui.engine.errors import EngineError, PromptTooLong, ToolsUnsupported
from tui.engine.protocol import (
    ChatMessage,
    Done,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from tui.i18n import _
from tui.prompting.templates import PromptingError
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.request import BuiltPrompt, PromptRequest, build_prompt
from tui.store.parts import Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from tui.tools.base import Tool, ToolError, parse_arguments

MAX_STEPS = 8
"""Model -> tool calls -> results -> model rounds in one turn, at most."""
DENIED = "The user did not allow this call. Do not try it again; answer without it."
Decision = Literal["once", "always", "deny"]


class TurnSink(Protocol):
    """Where a turn's pieces go, called from the generating thread."""

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        """The prompt is built: what fills the window (before the first token)."""

    def reasoning(self, text: str, n_tokens: int) -> None: ...

    def text(self, text: str, n_tokens: int) -> None: ...

    def tool_call(self, delta: ToolCallDelta) -> None: ...


@runtime_checkable
class ToolSink(TurnSink, Protocol):
    """A sink that also shows each tool step (the app, ``ask``)."""

    def tool_result(self, step: int, call: ToolCall, result: ToolResultPart) -> None: ...


Approver = Callable[[ToolCall, Tool], Decision]
"""Asked before each call of a tool that is not always allowed (from the generating thread:
it may block until the user answers)."""


@dataclass
class ToolUse:
    """The tools of a turn and who decides whether a call runs."""

    tools: list[Tool]
    approve: Approver
    always: set[str] = field(default_factory=set)
    """Tool names that run without asking; an "always" answer adds to it."""
    choice: ToolChoice = "auto"
    max_steps: int = MAX_STEPS
    on_always: Callable[[str], None] = lambda _name: None
    """Told when the user answers "always" (to remember it)."""


@dataclass
class TurnOutcome:
    done: Done | None = None
    """The engine's last word (None when nothing was generated)."""
    error: str | None = None
    """Why the turn failed, in one line (the partial answer is still in ``done``)."""
    context_error: str | None = None
    """The prompt did not fit the window: nothing was sent, nothing lost."""
    model: LoadedModel | None = None
    built: BuiltPrompt | None = None
    cancelled: bool = False
    steps: list[tuple[ToolCall, ToolResultPart]] = field(default_factory=list)
    """Each tool call and its result, in order."""
    done_before: list[Done] = field(default_factory=list)
    """The engine's answers of earlier rounds (those that asked for tools)."""
    notes: list[str] = field(default_factory=list)
    tool_overhead_s: float = 0.0
    """Time the tool loop spent outside generation and outside the tools themselves."""

    @property
    def text(self) -> str:
        return self.done.text if self.done is not None else ""

    @property
    def parts(self) -> tuple[Part, ...]:
        if not self.steps:
            return parts_of(self.done)
        parts: list[Part] = []
        results = iter(self.steps)
        for done in self.done_before:
            parts.extend(p for p in parts_of(done) if not isinstance(p, ToolCallPart))
            for _call in done.tool_calls:
                call, result = next(results)
                parts.append(ToolCallPart(call.id, call.name, call.arguments))
                parts.append(result)
        if self.done is not None:
            final = parts_of(self.done)
            parts.extend(final if final else
                         ([TextPart(self.done.text)] if self.done.text else []))
        return tuple(parts)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The knowledge-base sources the answer drew on (none for an unrelated answer)."""
        if self.built is None or not self.built.sources:
            return []
        from tui.kb.prompt import answer_sources

        return [dict(s) for s in answer_sources(self.text, self.built.sources,
                                                self.built.passages)]

    def stats(self) -> dict[str, Any] | None:
        """The figures saved with the reply: the engine's stats, the model, the sources."""
        if self.done is None:
            return None
        stats: dict[str, Any] = {**dataclasses.asdict(self.done.stats)}
        if self.model is not None:
            stats["model"] = self.model.name
            if self.model.model.profile is not None:
                stats["profile"] = self.model.model.profile.nickname
        if self.sources:
            stats["sources"] = self.sources
        return stats


def parts_of(done: Done | None) -> tuple[Part, ...]:
    """A finished turn's parts; () for a plain answer (its text is the message content)."""
    if done is None or not (done.reasoning or done.tool_calls):
        return ()
    parts: list[Part] = []
    if done.reasoning:
        parts.append(ReasoningPart(done.reasoning, done.stats.reasoning_tokens,
                                   round(done.stats.reasoning_seconds, 3)))
    if done.text:
        parts.append(TextPart(done.text))
    parts.extend(ToolCallPart(c.id, c.name, c.arguments) for c in done.tool_calls)
    return tuple(parts)


def run_turn(session: ModelSession, request: PromptRequest, sink: TurnSink,
             cancel: threading.Event, tools: ToolUse | None = None) -> TurnOutcome:
    """One reply, with its tool rounds when ``tools`` are given. Blocks: call it from a worker
    thread. Never raises for the engine's or the prompt's failures: they come back in the
    outcome."""
    outcome = TurnOutcome()
    try:
        loaded = session.wait_ready(cancel)
        if loaded is None:
            outcome.cancelled = True
            return outcome
        outcome.model = loaded
        try:
            built = build_prompt(request, loaded.engine)
        except PromptingError as exc:  # ContextError: nothing is sent, nothing lost
            outcome.context_error = str(exc)
            return outcome
        outcome.built = built
        sink.planned(built, loaded)
        messages = list(built.messages)
        step = 0
        while True:
            kwargs: dict[str, object] = {}
            if tools is not None and tools.tools:
                kwargs = {"tools": [t.spec() for t in tools.tools],
                          "tool_choice": tools.choice if step == 0 else "auto"}
            done = _generate(session, loaded, messages, built, sink, cancel, outcome, kwargs)
            outcome.done = done
            if (done is None or done.error or cancel.is_set() or not done.tool_calls
                    or tools is None):
                break
            step += 1
            if step > tools.max_steps:
                outcome.notes.append(_("stopped after {max_steps} tool rounds",
                                       max_steps=tools.max_steps))
                break
            outcome.done_before.append(done)
            messages.append(ChatMessage("assistant", done.text, tool_calls=done.tool_calls))
            for call in done.tool_calls:
                result = _run_call(call, tools, outcome)
                outcome.steps.append((call, result))
                if isinstance(sink, ToolSink):
                    sink.tool_result(step, call, result)
                messages.append(ChatMessage("tool", result.content, tool_call_id=call.id,
                                            name=call.name))
                if cancel.is_set():
                    break
            if cancel.is_set():
                outcome.done = None
                break
        if outcome.done is not None and outcome.done.error:
            outcome.error = outcome.done.error
        elif outcome.done is None:
            outcome.cancelled = cancel.is_set()
            if not outcome.cancelled:
                outcome.error = _("the engine stopped without finishing")
            elif outcome.done_before:  # stopped between rounds: keep the last answer
                outcome.done = outcome.done_before.pop()
    except PromptTooLong as exc:
        outcome.error = _("{exc} Start a new conversation or shorten this one.", exc=exc)
    except EngineError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a bug must not take the front end down: report it
        outcome.error = _("internal error: {name}: {exc}", name=type(exc).__name__, exc=exc)
    return outcome


def _generate(session: ModelSession, loaded: LoadedModel, messages: list[ChatMessage],
              built: BuiltPrompt, sink: TurnSink, cancel: threading.Event,
              outcome: TurnOutcome, kwargs: dict[str, object]) -> Done | None:
    done: Done | None = None
    try:
        events = session.generate(loaded.engine, messages, built.sampling, cancel, **kwargs)
        for event in events:
            if isinstance(event, TextDelta):
                sink.text(event.text, event.n_tokens)
            elif isinstance(event, ReasoningDelta):
                sink.reasoning(event.text, event.n_tokens)
            elif isinstance(event, ToolCallDelta):
                sink.tool_call(event)
            elif isinstance(event, Done):
                done = event
                outcome.notes.extend(event.notes)
    except EngineError as exc:
        # a worker or a server says so in English; the engines here raise ToolsUnsupported
        if not kwargs or not (isinstance(exc, ToolsUnsupported) or "tool" in str(exc)):
            raise
        # this model (or engine) cannot call tools: say so once and answer without them
        outcome.notes.append(_("{exc}; answering without tools", exc=exc))
        return _generate(session, loaded, messages, built, sink, cancel, outcome, {})
    return done


def _run_call(call: ToolCall, tools: ToolUse, outcome: TurnOutcome) -> ToolResultPart:
    """Ask (unless always allowed), run, and say what came of it; never raises."""
    started = time.perf_counter()
    tool = next((t for t in tools.tools if t.name == call.name), None)
    if tool is None:
        names = ", ".join(t.name for t in tools.tools)
        return ToolResultPart(call.id, call.name, f"There is no tool called {call.name}; "
                              f"the tools are: {names}.", error="unknown tool")
    if call.name not in tools.always:
        asked = time.perf_counter()
        decision = tools.approve(call, tool)
        started += time.perf_counter() - asked  # the user's thinking time is not overhead
        if decision == "deny":
            return ToolResultPart(call.id, call.name, DENIED, approved=False)
        if decision == "always":
            tools.always.add(call.name)
            tools.on_always(call.name)
    try:
        args = parse_arguments(call.arguments)
        ran = time.perf_counter()
        content = tool.run(args)
        started += time.perf_counter() - ran  # the tool's own time is not the loop's either
        result = ToolResultPart(call.id, call.name, content)
    except ToolError as exc:
        result = ToolResultPart(call.id, call.name, f"Error: {exc}", error=str(exc))
    except Exception as exc:  # a tool's bug must not end the turn
        line = f"{type(exc).__name__}: {exc}"
        result = ToolResultPart(call.id, call.name, f"Error: {line}", error=line)
    outcome.tool_overhead_s += time.perf_counter() - started
    return result
