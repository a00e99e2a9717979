"""Running one turn: wait for the model, build the prompt, generate holding the session's
lock, and hand each piece (reasoning, answer text, tool calls) to a sink as it arrives.

The app's sink moves the pieces to the screen on a timer; ``lmdesk ask``'s writes them to the
terminal. Whoever calls ``run_turn`` does it from a thread it may block (a worker), and saves
what the outcome holds: the answer, its parts and figures.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from tui.engine.errors import EngineError, PromptTooLong
from tui.engine.protocol import Done, ReasoningDelta, TextDelta, ToolCallDelta
from tui.prompting.templates import PromptingError
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.request import BuiltPrompt, PromptRequest, build_prompt
from tui.store.parts import Part, ReasoningPart, TextPart, ToolCallPart


class TurnSink(Protocol):
    """Where a turn's pieces go, called from the generating thread."""

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        """The prompt is built: what fills the window (before the first token)."""

    def reasoning(self, text: str, n_tokens: int) -> None: ...

    def text(self, text: str, n_tokens: int) -> None: ...

    def tool_call(self, delta: ToolCallDelta) -> None: ...


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

    @property
    def text(self) -> str:
        return self.done.text if self.done is not None else ""

    @property
    def parts(self) -> tuple[Part, ...]:
        return parts_of(self.done)

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.built.sources if self.built is not None else []

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
             cancel: threading.Event) -> TurnOutcome:
    """One reply. Blocks: call it from a worker thread. Never raises for the engine's or the
    prompt's failures: they come back in the outcome."""
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
        for event in session.generate(loaded.engine, built.messages, built.sampling, cancel):
            if isinstance(event, TextDelta):
                sink.text(event.text, event.n_tokens)
            elif isinstance(event, ReasoningDelta):
                sink.reasoning(event.text, event.n_tokens)
            elif isinstance(event, ToolCallDelta):
                sink.tool_call(event)
            elif isinstance(event, Done):
                outcome.done = event
        if outcome.done is not None and outcome.done.error:
            outcome.error = outcome.done.error
        elif outcome.done is None:
            outcome.cancelled = cancel.is_set()
            if not outcome.cancelled:
                outcome.error = "the engine stopped without finishing"
    except PromptTooLong as exc:
        outcome.error = f"{exc} Start a new conversation or shorten this one."
    except EngineError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a bug must not take the front end down: report it
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
    return outcome
