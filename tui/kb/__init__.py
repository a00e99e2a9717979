"""Knowledge bases: folders and files indexed for retrieval-augmented answers. No Textual.

- ``KBLibrary(data_dir)``: create, open, list and remove named knowledge bases.
- ``KnowledgeBase.reindex(progress=..., cancel=...)``: incremental ingest; ``search``.
- ``retrieve_for_prompt(kbs, query, engine, token_budget)``: passages within a budget, the
  system-prompt block that asks for [1], [2] citations, and the sources to show.
"""

from tui.kb.chunking import Chunk
from tui.kb.index import Embedder, FileState, Hit
from tui.kb.ingest import IngestReport, Progress
from tui.kb.kb import KBError, KBInfo, KBLibrary, KnowledgeBase
from tui.kb.prompt import (
    RetrievedContext,
    Source,
    kb_messages,
    retrieve_for_prompt,
)

__all__ = [
    "Chunk",
    "Embedder",
    "FileState",
    "Hit",
    "IngestReport",
    "KBError",
    "KBInfo",
    "KBLibrary",
    "KnowledgeBase",
    "Progress",
    "RetrievedContext",
    "Source",
    "kb_messages",
    "retrieve_for_prompt",
]
