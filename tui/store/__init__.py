"""Everything lmdesk keeps on disk: conversations, messages, settings and named tables.

TinyDB files written atomically (see ``storage``), one file per conversation, a schema
version with upgrade steps (``schema.UPGRADES``), one writer per data folder (a lock; a
second instance is read-only). No Textual here.
"""

from __future__ import annotations

from .checkpoint import ReplyCheckpoint
from .errors import NotFoundError, StoreError, StoreReadOnly
from .models import ConversationMeta, SearchHit, StoredMessage
from .options import ConversationOptions, EndpointModel, LocalModel, ModelChoice, ProfileModel
from .parts import Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from .schema import UPGRADES
from .store import Store

__all__ = [
    "UPGRADES",
    "ConversationMeta",
    "ConversationOptions",
    "EndpointModel",
    "LocalModel",
    "ModelChoice",
    "NotFoundError",
    "Part",
    "ProfileModel",
    "ReasoningPart",
    "ReplyCheckpoint",
    "SearchHit",
    "Store",
    "StoreError",
    "StoreReadOnly",
    "StoredMessage",
    "TextPart",
    "ToolCallPart",
    "ToolResultPart",
]
