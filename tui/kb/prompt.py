"""Passages from the attached knowledge bases, within a token budget, as a prompt block.

The app stores the attached knowledge bases' names in the conversation's options
(``ConversationOptions.knowledge_bases``),
calls ``retrieve_for_prompt`` with the user's message, passes ``system_block`` in with the
system prompt, and shows ``sources`` under the reply (each opens its file at its line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tui.display import count
from tui.i18n import _
from tui.kb.chunking import tokenize
from tui.kb.index import Embedder, Hit, rrf

if TYPE_CHECKING:
    from tui.config import Paths
    from tui.kb.kb import KnowledgeBase

PER_KB = 8
SHARED_TERMS = 2
"""An answer that cites no [n] must share this many words (stop words aside) with a passage
for that passage to be listed as its source."""
_CITATION = re.compile(r"\[(\d{1,3})\]")
INSTRUCTIONS = (
    "Answer using the numbered passages below. After each fact you take from a passage, "
    "cite it as [1], [2] and so on. If the passages do not contain the answer, say so."
)


class TokenCounter(Protocol):
    def count_tokens(self, text: str = "", messages: Sequence[object] = ()) -> int: ...


@dataclass(frozen=True)
class Source:
    n: int
    """The citation number: [n] in the reply."""
    path: str
    start: int
    end: int
    page: bool = False
    """``start``/``end`` are PDF pages."""
    heading: str = ""
    kb: str = ""
    sha1: str = ""
    """The file's SHA-1 when it was indexed (the passage viewer tells a changed file)."""

    @property
    def label(self) -> str:
        if self.page:
            loc = f"p. {self.start}" if self.start == self.end else f"pp. {self.start}-{self.end}"
            return f"{self.path} ({loc})"
        loc = str(self.start) if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.path}:{loc}"

    @property
    def open_line(self) -> int:
        """The line to open the file at (1 for a PDF)."""
        return 1 if self.page else self.start


@dataclass(frozen=True)
class RetrievedContext:
    passages: tuple[str, ...]
    """The passage texts, numbered from 1 in ``sources`` order."""
    sources: tuple[Source, ...]
    system_block: str
    """The text to add to the system prompt: instructions and the numbered passages.
    Empty when nothing was found."""
    tokens: int
    """Tokens ``system_block`` costs."""
    notes: tuple[str, ...] = ()

    def sources_text(self) -> str:
        """One line per source, as shown under a reply."""
        return "\n".join(f"[{s.n}] {s.label}" for s in self.sources)


def _estimate(text: str) -> int:
    return len(text) // 4 + 1


def _count(engine: TokenCounter | None, text: str) -> int:
    if engine is None:
        return _estimate(text)
    try:
        return engine.count_tokens(text)
    except Exception:
        return _estimate(text)


def _overlaps(hit: Hit, taken: list[Hit]) -> bool:
    c = hit.chunk
    return any(t.chunk.path == c.path and t.chunk.page == c.page and t.chunk.start <= c.end
               and c.start <= t.chunk.end for t in taken)


def _display_path(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def passage_text(n: int, hit: Hit) -> str:
    c = hit.chunk
    src = Source(n, _display_path(c.path), c.start, c.end, c.page)
    head = f" ({c.heading})" if c.heading else ""
    return f"[{n}] {src.label}{head}\n{c.text.strip()}"


def build_block(passages: Sequence[str]) -> str:
    if not passages:
        return ""
    return INSTRUCTIONS + "\n\n" + "\n\n".join(passages)


def search_many(kbs: Sequence[KnowledgeBase], query: str, k: int = PER_KB,
                embedder: Embedder | None = None) -> list[Hit]:
    """Hits from several knowledge bases, fused by rank (their BM25 scores are not
    comparable)."""
    runs = [kb.search(query, k, embedder) for kb in kbs]
    if len(runs) == 1:
        return runs[0]
    flat: list[Hit] = [h for run in runs for h in run]
    offsets = [0]
    for run in runs:
        offsets.append(offsets[-1] + len(run))
    rankings = [list(range(offsets[i], offsets[i + 1])) for i in range(len(runs))]
    return [flat[i] for i, _ in rrf(rankings)]


def retrieve_for_prompt(
    kbs: Sequence[KnowledgeBase],
    query: str,
    engine: TokenCounter | None,
    token_budget: int,
    *,
    k: int = PER_KB,
    embedder: Embedder | None = None,
) -> RetrievedContext:
    """The best passages for ``query`` that fit ``token_budget`` tokens (counted with the
    engine's tokenizer; estimated at 4 characters a token without one), numbered [1], [2]...
    A passage that does not fit is cut to the room left when at least 64 tokens remain."""
    hits = search_many(kbs, query, k, embedder)
    notes: list[str] = []
    base = _count(engine, INSTRUCTIONS + "\n\n")
    used = base
    taken: list[Hit] = []
    texts: list[str] = []
    for hit in hits:
        if _overlaps(hit, taken):
            continue
        n = len(taken) + 1
        text = passage_text(n, hit)
        cost = _count(engine, text + "\n\n")
        if used + cost > token_budget:
            room = token_budget - used
            if room < 64:
                notes.append(_("{count} left out (token budget)",
                               count=count(len(hits) - len(taken), 'passage')))
                break
            text = text[: max(0, int(len(text) * room / cost) - 8)].rstrip() + " ..."
            cost = _count(engine, text + "\n\n")
            if used + cost > token_budget:
                break
        taken.append(hit)
        texts.append(text)
        used += cost
    if not taken:
        return RetrievedContext((), (), "", 0, tuple(notes) or (_("no passages found"),))
    indexed = {kb.name: kb.index.files for kb in kbs}
    sources = tuple(Source(i, h.chunk.path, h.chunk.start, h.chunk.end, h.chunk.page,
                           h.chunk.heading, h.kb, _indexed_sha1(indexed, h))
                    for i, h in enumerate(taken, 1))
    block = build_block(texts)
    return RetrievedContext(tuple(texts), sources, block, _count(engine, block), tuple(notes))


def _indexed_sha1(indexed: Mapping[str, Mapping[str, object]], hit: Hit) -> str:
    state = indexed.get(hit.kb, {}).get(hit.chunk.path)
    return str(getattr(state, "sha1", "") or "")


def passage_body(passage: str) -> str:
    """A numbered passage without its header line (the number, the file, the heading)."""
    return passage.split("\n", 1)[1] if "\n" in passage else ""


def answer_sources(answer: str, sources: Sequence[Mapping[str, object]],
                   passages: Sequence[str]) -> list[Mapping[str, object]]:
    """The sources an answer is drawn from, of those its prompt offered (``passages[i]`` is
    source i + 1). An answer that cites [n] has those; one that cites none has the passages
    it shares words with, so an answer unrelated to the documents lists no source."""
    numbers = {int(n) for n in _CITATION.findall(answer)}
    cited = [s for s in sources if s.get("n") in numbers]
    if cited:
        return cited
    words = set(tokenize(answer))
    return [s for s, passage in zip(sources, passages, strict=False)
            if len(words & set(tokenize(passage_body(passage)))) >= SHARED_TERMS]


def kb_messages(
    paths: Paths | Path,
    names: Sequence[str],
    question: str,
    engine: TokenCounter | None,
    token_budget: int = 1024,
) -> tuple[str, tuple[Source, ...]]:
    """For ``lmdesk ask --kb NAME``: the system block and the sources for ``question``.
    Raises ``KBError`` for an unknown name."""
    from tui.kb.kb import KBLibrary

    lib = KBLibrary(paths if isinstance(paths, Path) else paths.data_dir)
    kbs = [lib.open(n) for n in names]
    ctx = retrieve_for_prompt(kbs, question, engine, token_budget)
    return ctx.system_block, ctx.sources
