"""Pack extracted units into chunks along the document's structure, with overlap.

A chunk never crosses a section boundary (a heading, a top-level definition) unless the
section before it is tiny; within a section, units are packed up to ``max_chars`` and the
last unit (up to ``overlap_chars``) is repeated at the start of the next chunk, so a fact
split across two chunks is still found whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from sys import intern

from tui.kb.extract import Unit

MAX_CHARS = 1200
OVERLAP_CHARS = 200
MIN_CHARS = 200
"""A section shorter than this is merged into the next one rather than standing alone."""


@dataclass(frozen=True)
class Chunk:
    path: str
    start: int
    end: int
    text: str
    heading: str = ""
    page: bool = False
    """``start``/``end`` are PDF pages, not lines."""

    @property
    def location(self) -> str:
        if self.page:
            return f"p. {self.start}" if self.start == self.end else f"pp. {self.start}-{self.end}"
        return f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"


def _split_big(unit: Unit, max_chars: int) -> list[Unit]:
    """A unit longer than ``max_chars`` cut on line boundaries (long lines cut hard)."""
    if len(unit.text) <= max_chars:
        return [unit]
    out: list[Unit] = []
    lines = unit.text.split("\n")
    buf: list[str] = []
    size = 0
    first = unit.start
    line_no = unit.start
    span_lines = unit.end > unit.start  # page units keep their page number
    for line in lines:
        pieces = [line[i:i + max_chars] for i in range(0, len(line), max_chars)] or [""]
        for piece in pieces:
            if buf and size + len(piece) + 1 > max_chars:
                end = line_no - 1 if span_lines and line_no > first else first
                out.append(Unit("\n".join(buf), first, max(end, first), unit.heading,
                                unit.boundary and not out))
                buf, size, first = [], 0, line_no
            buf.append(piece)
            size += len(piece) + 1
        if span_lines:
            line_no += 1
    if buf:
        out.append(Unit("\n".join(buf), first, unit.end, unit.heading,
                        unit.boundary and not out))
    return out


def chunk_units(
    path: str,
    units: list[Unit],
    *,
    page: bool = False,
    max_chars: int = MAX_CHARS,
    overlap_chars: int = OVERLAP_CHARS,
) -> list[Chunk]:
    pieces = [p for u in units for p in _split_big(u, max_chars)]
    chunks: list[Chunk] = []
    cur: list[Unit] = []
    size = 0

    def emit() -> None:
        if cur:
            text = "\n\n".join(u.text for u in cur)
            heading = next((u.heading for u in cur if u.heading), "")
            chunks.append(Chunk(path, cur[0].start, max(u.end for u in cur), text, heading,
                                page))

    for unit in pieces:
        n = len(unit.text) + 2
        if cur and unit.boundary and size >= MIN_CHARS:
            emit()
            cur, size = [], 0
        elif cur and size + n > max_chars:
            emit()
            tail = cur[-1]
            # overlap: carry the last unit over when it is small and in the same section
            if len(tail.text) <= overlap_chars and tail.heading == unit.heading:
                cur, size = [tail], len(tail.text) + 2
            else:
                cur, size = [], 0
        cur.append(unit)
        size += n
    emit()
    return chunks


_WORD = re.compile(r"[A-Za-z0-9_]+|[^\W\d_]+", re.UNICODE)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = """
a an and are as at be but by for from has have how i if in into is it its of on or so such
that the their then there these they this to was were what when where which who why will
with does do did can you your we our not no yes me my he she his her them than too very
"""
STOPWORDS = frozenset(_STOP.split())


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=1 << 18)
def _word_tokens(word: str) -> tuple[str, ...]:
    """The tokens of one word (cached: a text repeats its words, and each token string is
    then held once however often it occurs)."""
    low = word.lower()
    if len(low) > 40:
        return ()
    out: list[str] = []
    parts = [p.lower() for seg in word.split("_") for p in _CAMEL.findall(seg)]
    if len(parts) > 1 or (parts and parts[0] != low):
        if low not in STOPWORDS:
            out.append(_stem(low))
        out.extend(_stem(p) for p in parts if p not in STOPWORDS and len(p) > 1)
    elif low not in STOPWORDS:
        out.append(_stem(low))
    return tuple(intern(t) for t in out)


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words, plurals folded; identifiers also split on
    ``snake_case`` and ``camelCase`` so ``run_kb_bench`` matches "kb bench"."""
    out: list[str] = []
    for word in _WORD.findall(text):
        out.extend(_word_tokens(word))
    return out
