"""The records the store hands out, and their conversion to and from stored documents."""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tui.i18n import _

from .errors import StoreError
from .options import ConversationOptions, options_from_doc
from .parts import Part, parts_from_docs, parts_to_docs, reasoning_of

ROLES = ("system", "user", "assistant")
STATUSES = ("done", "stopped", "error", "partial")


@dataclass
class StoredMessage:
    id: str
    role: str
    """"system", "user" or "assistant"."""
    content: str
    created: float
    model: str | None = None
    stats: dict[str, Any] | None = None
    status: str = "done"
    """"done", "stopped", "error" or "partial" (a reply still streaming, or cut off by a crash)."""
    error: str | None = None
    parts: tuple[Part, ...] = ()
    """An assistant turn's structure (reasoning, tool calls and results) when it has more than
    a plain answer; ``content`` is always the answer text (see ``tui.store.parts``)."""
    parent: str | None = None
    """The message this one answers or follows; None for a first message. Siblings (same
    parent) are the other versions of a reply or a prompt (see ``tui.store.tree``)."""

    @property
    def reasoning(self) -> str:
        return reasoning_of(self.parts)

    @property
    def can_continue(self) -> bool:
        """A reply that ended early (stopped, cut off by a crash, or at its token limit) and
        can be continued where it ended."""
        if self.role != "assistant" or not self.content:
            return False
        return self.status in ("stopped", "partial") or (
            self.status == "done" and (self.stats or {}).get("stop_reason") == "length")


@dataclass
class ConversationMeta:
    id: str
    title: str
    created: float
    updated: float
    pinned: bool = False
    system_prompt: str = ""
    model: str | None = None
    message_count: int = 0
    options: ConversationOptions = field(default_factory=ConversationOptions)
    """Model, persona, memory, context policy, knowledge bases, reasoning budget, tools."""


@dataclass
class SearchHit:
    conversation_id: str
    message_id: str
    title: str
    snippet: str
    role: str


def new_id(prefix: str) -> str:
    """A short, sortable, file-name-safe id: time in ms (hex) plus random bits."""
    return f"{prefix}{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def check_role(role: str) -> None:
    if role not in ROLES:
        raise StoreError(_("unknown message role {role!r} (expected one of {join})",
                           role=role, join=', '.join(ROLES)))


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(
            _("unknown message status {status!r} (expected one of {join})",
              status=status, join=', '.join(STATUSES))
        )


def message_to_doc(msg: StoredMessage) -> dict[str, Any]:
    return {
        "id": msg.id,
        "role": msg.role,
        "content": msg.content,
        "created": msg.created,
        "model": msg.model,
        "stats": copy.deepcopy(msg.stats),
        "status": msg.status,
        "error": msg.error,
        "parent": msg.parent,
        **({"parts": parts_to_docs(msg.parts)} if msg.parts else {}),
    }


def message_from_doc(doc: dict[str, Any]) -> StoredMessage:
    stats = doc.get("stats")
    return StoredMessage(
        id=str(doc.get("id", "")),
        role=str(doc.get("role", "user")),
        content=str(doc.get("content", "")),
        created=float(doc.get("created", 0.0)),
        model=doc.get("model"),
        stats=copy.deepcopy(stats) if isinstance(stats, dict) else None,
        status=str(doc.get("status", "done")),
        error=doc.get("error"),
        parts=parts_from_docs(doc.get("parts")),
        parent=doc["parent"] if isinstance(doc.get("parent"), str) else None,
    )


def meta_from_row(row: dict[str, Any], live: dict[str, Any] | None = None) -> ConversationMeta:
    """Build a ConversationMeta from an index row, with newer counters from ``live`` if given."""
    options, _problems = options_from_doc(row.get("options"))
    created = float(row.get("created", 0.0))
    meta = ConversationMeta(
        id=str(row["id"]),
        title=str(row.get("title", "")),
        created=created,
        updated=float(row.get("updated", created)),
        pinned=bool(row.get("pinned", False)),
        system_prompt=str(row.get("system_prompt", "")),
        model=row.get("model"),
        message_count=int(row.get("message_count", 0)),
        options=options,
    )
    if live:
        meta.updated = float(live.get("updated", meta.updated))
        meta.message_count = int(live.get("message_count", meta.message_count))
    return meta


def sort_key(meta: ConversationMeta) -> tuple[bool, float]:
    """Pinned first, then the most recently updated (use with ``reverse=True``)."""
    return (meta.pinned, meta.updated)
