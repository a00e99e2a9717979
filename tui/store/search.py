"""Searching every message of every branch of the conversations, newest first."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .conversation_file import MSG_TABLE, ConversationFile
from .exchange import snippet
from .models import ConversationMeta, SearchHit
from .parts import parts_from_docs, reasoning_of


def search_files(files: Iterable[tuple[ConversationMeta, ConversationFile]], query: str,
                 limit: int, *, reasoning: bool = False) -> list[SearchHit]:
    """Case-insensitive substring hits in the files' messages (all branches, hidden ones
    too), in the order given; with ``reasoning``, in thinking models' reasoning as well.
    The files are read as they come, so a caller can pass files it does not keep open."""
    if not query or limit <= 0:
        return []
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    hits: list[SearchHit] = []
    for meta, file in files:
        for doc in file.data().get(MSG_TABLE, {}).values():
            content = doc.get("content")
            if not isinstance(content, str):
                continue
            found = pattern.search(content)
            label = ""
            if found is None and reasoning and doc.get("parts"):
                content = reasoning_of(parts_from_docs(doc.get("parts")))
                found = pattern.search(content)
                label = "(reasoning) "
            if found is None:
                continue
            hits.append(SearchHit(
                conversation_id=meta.id, message_id=str(doc.get("id", "")), title=meta.title,
                snippet=label + snippet(content, found.start(), found.end()),
                role=str(doc.get("role", "")),
            ))
            if len(hits) >= limit:
                return hits
    return hits
