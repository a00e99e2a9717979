"""One reply being written: what the generation thread shares with the UI thread.

The job is the turn's sink (``tui.session.turn.TurnSink``): the generation thread appends
reasoning and answer deltas under a lock; the UI drains them on a short timer and appends the
text to the Markdown stream in one go. The thread never touches widgets or the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tui.app.messages import ContextPlanned, ToolApprovalNeeded
from tui.app.widgets.tool_approval import ApprovalRequest
from tui.engine.protocol import ToolCall, ToolCallDelta
from tui.session.turn import Decision
from tui.store.parts import ToolResultPart
from tui.tools import Tool

if TYPE_CHECKING:
    from textual.message import Message

    from tui.app.widgets.message_view import LiveReply
    from tui.session.model_session import LoadedModel
    from tui.session.request import BuiltPrompt, PromptRequest
    from tui.store import StoredMessage


@dataclass(eq=False)
class ReplyJob:
    conversation_id: str
    model: str
    view: LiveReply
    request: PromptRequest
    """What the prompt is built from; the generation thread builds it (tui.session)."""
    post: Callable[[Message], object]
    """Posts a message to the UI thread (the pane's ``post_message``)."""
    on_tokens: Callable[[int], None] = lambda _n: None
    """Told of every batch of generated tokens (the monitor's live tok/s)."""
    segment: str = ""
    """Text in the live tail, not yet frozen (UI thread only)."""
    stored: StoredMessage | None = None
    """The assistant message in the store, once the first token arrived (from the start when
    a reply is continued)."""
    parent_id: str | None = None
    """The message the reply answers (the last of the branch it was asked on)."""
    continuing: StoredMessage | None = None
    """The reply being continued where it stopped (its text comes first in ``shown``)."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    reasoning_started: float | None = None
    reasoning_ended: float | None = None
    last_checkpoint: float = field(default_factory=time.monotonic)
    shown: list[str] = field(default_factory=list)
    """Answer text already handed to the Markdown stream (UI thread only)."""
    tokens_shown: int = 0
    reasoning_shown: list[str] = field(default_factory=list)
    reasoning_tokens: int = 0
    save_failed: bool = False
    detached: bool = False
    """The user left the conversation while this reply streamed: it was stopped, and what it
    wrote is saved into its own conversation when the engine ends (no widget is touched)."""
    _pending: list[str] = field(default_factory=list)
    _pending_tokens: int = 0
    tool_names: tuple[str, ...] = ()
    """The conversation's enabled tools (resolved on the generation thread)."""
    step: int = 0
    """Tool rounds done so far."""
    waiting: ApprovalRequest | None = None
    """The call waiting for the user's answer, if any."""
    steps_shown: list[tuple[int, ToolCall, ToolResultPart]] = field(default_factory=list)
    _pending_steps: list[tuple[int, ToolCall, ToolResultPart]] = field(default_factory=list)
    _pending_reasoning: list[str] = field(default_factory=list)
    _pending_reasoning_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the turn's sink (generation thread) ---------------------------------------------------

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        self.post(ContextPlanned(self.conversation_id, built.plan.tokens, built.n_ctx,
                                 built.plan.left_out, tuple(built.notes)))

    def text(self, text: str, n_tokens: int) -> None:
        with self._lock:
            now = time.perf_counter()
            if self.first_token_at is None:
                self.first_token_at = now
            if self.reasoning_started is not None and self.reasoning_ended is None:
                self.reasoning_ended = now
            self._pending.append(text)
            self._pending_tokens += n_tokens
        self.on_tokens(n_tokens)

    def reasoning(self, text: str, n_tokens: int) -> None:
        with self._lock:
            if self.reasoning_started is None:
                self.reasoning_started = time.perf_counter()
            self._pending_reasoning.append(text)
            self._pending_reasoning_tokens += n_tokens
        self.on_tokens(n_tokens)

    def tool_call(self, delta: ToolCallDelta) -> None:
        """A call is shown once it has run (``tool_result``)."""

    def tool_result(self, step: int, call: ToolCall, result: ToolResultPart) -> None:
        with self._lock:
            self.step = step
            self._pending_steps.append((step, call, result))

    def approve(self, call: ToolCall, tool: Tool) -> Decision:
        """The turn's approver: ask the UI and wait (a stopped reply denies)."""
        request = ApprovalRequest(call, tool, self.step + 1)
        self.waiting = request
        self.post(ToolApprovalNeeded(self, request))
        try:
            return request.wait(self.cancel_event)
        finally:
            self.waiting = None

    # -- UI thread -----------------------------------------------------------------------------

    def take(self) -> tuple[str, int]:
        """The answer text and token count that arrived since the last call (the reasoning
        that arrived too is moved to ``reasoning_shown``)."""
        with self._lock:
            text = "".join(self._pending)
            tokens = self._pending_tokens
            self._pending.clear()
            self._pending_tokens = 0
            thought = "".join(self._pending_reasoning)
            self.reasoning_tokens += self._pending_reasoning_tokens
            self._pending_reasoning.clear()
            self._pending_reasoning_tokens = 0
        with self._lock:
            steps = list(self._pending_steps)
            self._pending_steps.clear()
        self.steps_shown.extend(steps)
        if thought:
            self.reasoning_shown.append(thought)
        if text:
            self.shown.append(text)
            self.tokens_shown += tokens
        return text, tokens

    @property
    def text_so_far(self) -> str:
        return "".join(self.shown)

    @property
    def prefix(self) -> str:
        """What the reply held before this generation (a continued reply's text)."""
        return self.continuing.content if self.continuing is not None else ""

    @property
    def reasoning_so_far(self) -> str:
        return "".join(self.reasoning_shown)

    @property
    def thinking(self) -> bool:
        """Reasoning has started and no answer has come yet."""
        return self.reasoning_started is not None and not self.shown

    def reasoning_seconds(self) -> float:
        if self.reasoning_started is None:
            return 0.0
        end = self.reasoning_ended or time.perf_counter()
        return max(end - self.reasoning_started, 0.0)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def live_rate(self) -> float:
        """Tokens per second since the first token, as the UI has seen them."""
        if self.first_token_at is None or self.tokens_shown < 2:
            return 0.0
        elapsed = time.perf_counter() - self.first_token_at
        return self.tokens_shown / elapsed if elapsed > 0 else 0.0
