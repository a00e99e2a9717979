"""One reply being written: what the generation thread shares with the UI thread.

The thread appends deltas under a lock; the UI drains them on a short timer and appends the text
to the Markdown stream in one go. The thread never touches widgets or the store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui.engine.protocol import ChatMessage, Done, SamplingParams

if TYPE_CHECKING:
    from textual.widgets.markdown import MarkdownStream

    from tui.app.prompt_builder import PromptRequest
    from tui.app.widgets.message_view import LiveReply
    from tui.store import StoredMessage


@dataclass(eq=False)
class ReplyJob:
    conversation_id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    model: str
    view: LiveReply
    stream: MarkdownStream | None = None
    segment: str = ""
    """Text in the live Markdown tail, not yet frozen (UI thread only)."""
    stored: StoredMessage | None = None
    """The assistant message in the store, once the first token arrived."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_checkpoint: float = field(default_factory=time.monotonic)
    shown: list[str] = field(default_factory=list)
    """Text already handed to the Markdown stream (UI thread only)."""
    tokens_shown: int = 0
    save_failed: bool = False
    request: PromptRequest | None = None
    """What the prompt is built from (prompt_builder.py); the generation thread builds
    ``messages`` and ``sampling`` from it before generating."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    """Knowledge-base passages the prompt cites: saved in the reply's stats["sources"]."""
    notes: list[str] = field(default_factory=list)
    context_error: str | None = None
    """The prompt could not fit the window: nothing was sent (nothing lost)."""
    detached: bool = False
    """The user left the conversation while this reply streamed: it was stopped, and what it
    wrote is saved into its own conversation when the engine ends (no widget is touched)."""
    _pending: list[str] = field(default_factory=list)
    _pending_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- generation thread ---------------------------------------------------------------------

    def push(self, text: str, n_tokens: int) -> None:
        with self._lock:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self._pending.append(text)
            self._pending_tokens += n_tokens

    # -- UI thread -----------------------------------------------------------------------------

    def take(self) -> tuple[str, int]:
        """The text and token count that arrived since the last call."""
        with self._lock:
            if not self._pending:
                return "", 0
            text = "".join(self._pending)
            tokens = self._pending_tokens
            self._pending.clear()
            self._pending_tokens = 0
        self.shown.append(text)
        self.tokens_shown += tokens
        return text, tokens

    @property
    def text(self) -> str:
        return "".join(self.shown)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def live_rate(self) -> float:
        """Tokens per second since the first token, as the UI has seen them."""
        if self.first_token_at is None or self.tokens_shown < 2:
            return 0.0
        elapsed = time.perf_counter() - self.first_token_at
        return self.tokens_shown / elapsed if elapsed > 0 else 0.0


class ReplyFinished(Message):
    """Posted by the generation thread when the engine is done (or failed)."""

    def __init__(self, job: ReplyJob, done: Done | None, error: str | None = None) -> None:
        super().__init__()
        self.job = job
        self.done = done
        self.error = error


class ModelLoaded(Message):
    """The model finished loading."""


class ModelLoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
