"""Replies marked "good" in a chat, kept with the question before each: pairs to tune on.

A mark is a copy (question, reply, the conversation's system prompt) in the store's
"tune_marks" table, keyed by the reply's message id, so it survives edits and deletions of
the conversation and needs nothing from the message schema. No Textual here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinydb import Query

from tui.tune.pairs import Pair

if TYPE_CHECKING:
    from tui.store import Store

TABLE = "tune_marks"


@dataclass(frozen=True)
class Mark:
    message_id: str
    conversation_id: str
    question: str
    reply: str
    system: str = ""
    model: str = ""
    marked: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "conversation_id": self.conversation_id,
                "question": self.question, "reply": self.reply, "system": self.system,
                "model": self.model, "marked": self.marked}

    @classmethod
    def from_dict(cls, row: Any) -> Mark:
        return cls(str(row["message_id"]), str(row.get("conversation_id", "")),
                   str(row.get("question", "")), str(row.get("reply", "")),
                   str(row.get("system") or ""), str(row.get("model") or ""),
                   float(row.get("marked", 0.0)))


class GoodReplies:
    """The marks in the store, oldest first."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _table(self) -> Any:
        return self.store.table(TABLE)

    def marks(self) -> list[Mark]:
        out = []
        for row in self._table().all():
            try:
                out.append(Mark.from_dict(row))
            except (KeyError, TypeError, ValueError):
                continue  # one broken row must not hide the others
        return sorted(out, key=lambda m: m.marked)

    def is_marked(self, message_id: str) -> bool:
        return bool(self._table().search(Query().message_id == message_id))

    def toggle(self, message_id: str, conversation_id: str, question: str, reply: str, *,
               system: str = "", model: str = "") -> bool:
        """Mark the reply, or unmark it when it already is; True when it is marked now."""
        if self.is_marked(message_id):
            self._table().remove(Query().message_id == message_id)
            return False
        self._table().insert(Mark(message_id, conversation_id, question, reply, system, model,
                                  time.time()).to_dict())
        return True

    def pairs(self) -> list[Pair]:
        return [Pair(m.question.strip(), m.reply.strip(), m.system.strip() or None)
                for m in self.marks() if m.question.strip() and m.reply.strip()]
