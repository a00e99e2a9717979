"""Saving a streaming reply: a crash loses seconds, not the answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .models import StoredMessage

if TYPE_CHECKING:
    from .store import Store

CHECKPOINT_SECONDS = 3.0


class ReplyCheckpoint:
    """Append an empty ``partial`` reply now, re-save its text at most every ``interval``
    seconds while it streams (``update``), and give it its final status (``finish``)."""

    def __init__(
        self, store: Store, cid: str, *, model: str | None = None,
        interval: float = CHECKPOINT_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cid = cid
        self.interval = interval
        self._clock = clock
        self.message: StoredMessage = store.append_message(
            cid, "assistant", "", model=model, status="partial"
        )
        self._saved_at = clock()
        self._saved_text = ""

    def update(self, content: str) -> bool:
        """Call with the whole text so far, as often as you like; True when it was saved."""
        if content == self._saved_text or self._clock() - self._saved_at < self.interval:
            return False
        self.store.update_message(self.cid, self.message.id, content=content)
        self._saved_at = self._clock()
        self._saved_text = content
        return True

    def finish(
        self, content: str, *, status: str = "done", stats: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> StoredMessage:
        """The last save: the full text and "done", "stopped" or "error"."""
        self.store.update_message(
            self.cid, self.message.id, content=content, status=status, stats=stats, error=error
        )
        self.message.content = content
        self.message.status = status
        self.message.stats = stats
        self.message.error = error
        return self.message
