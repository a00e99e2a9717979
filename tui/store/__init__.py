"""Everything lmdesk keeps on disk: conversations, messages, settings and named tables.

TinyDB files written atomically (see ``storage``), one file per conversation carrying its own
metadata (so a lost index is rebuilt from them: ``index``), a conversation's messages as a
tree (``tree``), a file per named table (``tables``), a schema version with upgrade steps
(``schema.UPGRADES``), one writer per data folder (a lock; a second instance is read-only).
No Textual here.
"""

from __future__ import annotations

from .checkpoint import ReplyCheckpoint
from .errors import NotFoundError, StoreError, StoreReadOnly
from .models import ConversationMeta, SearchHit, StoredMessage
from .options import ConversationOptions, EndpointModel, LocalModel, ModelChoice, ProfileModel
from .parts import Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from .schema import UPGRADES
from .store import LEAF, Store
from .tree import ConversationTree

__all__ = [
    "LEAF",
    "UPGRADES",
    "ConversationMeta",
    "ConversationOptions",
    "ConversationTree",
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
