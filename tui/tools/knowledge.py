"""The search behind the ``search_knowledge`` tool: the conversation's knowledge bases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tui.tools.base import ToolError


def knowledge_search(data_dir: Path, names: Sequence[str]) -> Callable[[str], str]:
    """A search over the knowledge bases ``names`` that answers with numbered passages."""

    def search(query: str) -> str:
        from tui.kb import KBError, KBLibrary
        from tui.kb.prompt import search_many

        library = KBLibrary(data_dir)
        try:
            hits = search_many([library.open(n) for n in names], query)
        except KBError as exc:
            raise ToolError(str(exc)) from None
        return "\n\n".join(
            f"[{i}] {h.chunk.path}:{h.chunk.location}\n{h.chunk.text}"
            for i, h in enumerate(hits, 1)) or "No passage matches."

    return search
