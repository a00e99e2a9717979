"""A turn added to a stored conversation from outside the app (``lmdesk ask --chat ID``).

The prompt is appended to the branch shown (the conversation continues from where its reader
left it), the request is built from that branch exactly as the app builds it, and the reply
is saved as it streams: appended as "partial" at its first piece, re-saved every few seconds,
and given its final status and figures at the end. ``--continue`` instead extends the branch's
last reply where it stopped (the engine continues the assistant text; no new prompt).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tui.engine.protocol import ToolCall, ToolCallDelta
from tui.i18n import _
from tui.session.turn import ToolSink
from tui.store.parts import ToolResultPart, continued_parts

if TYPE_CHECKING:
    from tui.session.model_session import LoadedModel
    from tui.session.request import BuiltPrompt
    from tui.session.turn import TurnOutcome, TurnSink
    from tui.store import ConversationMeta, Store, StoredMessage

CHECKPOINT_S = 3.0


class StoredTurnError(Exception):
    """One line: why the turn cannot be added."""


@dataclass
class ChatTurn:
    """Where a turn goes in a stored conversation."""

    meta: ConversationMeta
    history: list[StoredMessage]
    """The branch the reply answers, oldest first (ending with the prompt, or with the reply
    being continued)."""
    continuing: StoredMessage | None = None


def begin(store: Store, meta: ConversationMeta, prompt: str, *, continue_reply: bool
          ) -> ChatTurn:
    """Append ``prompt`` to the branch shown (or, ``continue_reply``, pick the reply to go on
    with). Raises ``StoredTurnError``."""
    history = store.branch(meta.id)
    if continue_reply:
        last = history[-1] if history else None
        if last is None or not last.can_continue:
            raise StoredTurnError(
                _("the last reply in “{title}” did not stop early: there is nothing to continue "
                  "(only a stopped reply, or one cut at its token limit, can be)",
                  title=meta.title))
        return ChatTurn(meta, history, continuing=last)
    parent = history[-1].id if history else None
    history.append(store.append_message(meta.id, "user", prompt, parent=parent))
    return ChatTurn(meta, history)


@dataclass
class SavingSink:
    """A turn's sink that saves the reply as it streams, then hands every piece on."""

    store: Store
    turn: ChatTurn
    inner: TurnSink
    model: str | None = None
    saved: StoredMessage | None = None
    save_error: str | None = None
    _text: list[str] = field(default_factory=list)
    _saved_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.saved = self.turn.continuing

    @property
    def prefix(self) -> str:
        return self.turn.continuing.content if self.turn.continuing is not None else ""

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        self.model = model.name
        self.inner.planned(built, model)

    def reasoning(self, text: str, n_tokens: int) -> None:
        self.inner.reasoning(text, n_tokens)

    def tool_call(self, delta: ToolCallDelta) -> None:
        self.inner.tool_call(delta)

    def tool_result(self, step: int, call: ToolCall, result: ToolResultPart) -> None:
        if isinstance(self.inner, ToolSink):
            self.inner.tool_result(step, call, result)

    def text(self, text: str, n_tokens: int) -> None:
        self.inner.text(text, n_tokens)
        with self._lock:
            self._text.append(text)
            whole = self.prefix + "".join(self._text)
            now = time.monotonic()
            if self.save_error is not None:
                return
            try:
                if self.saved is None:
                    self.saved = self.store.append_message(
                        self.turn.meta.id, "assistant", whole, model=self.model,
                        status="partial", parent=self.turn.history[-1].id)
                    self._saved_at = now
                elif now - self._saved_at >= CHECKPOINT_S:
                    self.store.update_message(self.turn.meta.id, self.saved.id, content=whole)
                    self._saved_at = now
            except Exception as exc:  # told once at the end; the reply still prints
                self.save_error = str(exc)

    def finish(self, outcome: TurnOutcome) -> StoredMessage | None:
        """The last save: the whole answer, its status, parts and figures."""
        with self._lock:
            new = outcome.text or "".join(self._text)
            whole = self.prefix + new
            reason = outcome.done.stats.stop_reason if outcome.done is not None else None
            status = "error" if outcome.error or reason == "error" else (
                "stopped" if outcome.cancelled or reason == "cancelled" else "done")
            if self.turn.continuing is not None:
                parts = continued_parts(self.turn.continuing.parts, outcome.parts, whole)
            else:
                parts = outcome.parts
            if self.save_error is not None:
                raise StoredTurnError(_("the reply could not be saved: {save_error}",
                                        save_error=self.save_error))
            stats = outcome.stats()
            if self.saved is None:
                if not new and not parts:
                    return None
                return self.store.append_message(
                    self.turn.meta.id, "assistant", whole, model=self.model, stats=stats,
                    status=status, error=outcome.error, parts=parts,
                    parent=self.turn.history[-1].id)
            self.store.update_message(self.turn.meta.id, self.saved.id, content=whole,
                                      status=status, stats=stats, error=outcome.error,
                                      parts=parts)
            return self.saved
