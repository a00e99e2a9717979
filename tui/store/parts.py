"""The parts of a stored assistant turn: reasoning, answer text, tool calls and their results.

A message's ``content`` is always its answer text (what search, copy and the old export read);
``parts`` keeps the structure when there is more than one plain answer: the reasoning block
with its token count and duration, and each tool call with its result, in the order they
happened. A message from before parts existed has none and reads as text only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReasoningPart:
    text: str
    tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ToolCallPart:
    call_id: str
    name: str
    arguments: str
    """JSON text, as the model wrote it."""


@dataclass(frozen=True)
class ToolResultPart:
    call_id: str
    name: str
    content: str
    approved: bool = True
    """False: the user denied the call and the model was told so (it never ran)."""
    error: str | None = None


Part = ReasoningPart | TextPart | ToolCallPart | ToolResultPart


def part_to_doc(part: Part) -> dict[str, Any]:
    if isinstance(part, ReasoningPart):
        return {"type": "reasoning", "text": part.text, "tokens": part.tokens,
                "seconds": part.seconds}
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ToolCallPart):
        return {"type": "tool_call", "id": part.call_id, "name": part.name,
                "arguments": part.arguments}
    return {"type": "tool_result", "id": part.call_id, "name": part.name,
            "content": part.content, "approved": part.approved, "error": part.error}


def part_from_doc(doc: object) -> Part | None:
    """A part from its stored form; None for anything not understood (skipped, not fatal)."""
    if not isinstance(doc, Mapping):
        return None

    def text(key: str) -> str:
        value = doc.get(key, "")
        return value if isinstance(value, str) else ""

    def number(key: str) -> float:
        value = doc.get(key, 0)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else 0.0

    kind = doc.get("type")
    if kind == "reasoning":
        return ReasoningPart(text("text"), int(number("tokens")), number("seconds"))
    if kind == "text":
        return TextPart(text("text"))
    if kind == "tool_call":
        return ToolCallPart(text("id"), text("name"), text("arguments"))
    if kind == "tool_result":
        error = doc.get("error")
        return ToolResultPart(text("id"), text("name"), text("content"),
                              doc.get("approved") is not False,
                              error if isinstance(error, str) else None)
    return None


def parts_to_docs(parts: Iterable[Part]) -> list[dict[str, Any]]:
    return [part_to_doc(p) for p in parts]


def parts_from_docs(docs: object) -> tuple[Part, ...]:
    if not isinstance(docs, list):
        return ()
    return tuple(p for p in (part_from_doc(d) for d in docs) if p is not None)


def reasoning_of(parts: Iterable[Part]) -> str:
    """All reasoning text of a turn, blocks separated by a blank line."""
    return "\n\n".join(p.text for p in parts if isinstance(p, ReasoningPart) and p.text)


def continued_parts(before: Iterable[Part], after: Iterable[Part], text: str
                    ) -> tuple[Part, ...]:
    """The parts of a reply continued where it stopped: what it had (reasoning, tool calls),
    what the continuation added, and the whole answer ``text``; () when neither had parts."""
    kept = [p for p in (*before, *after) if not isinstance(p, TextPart)]
    if not kept:
        return ()
    return (*kept, TextPart(text)) if text else tuple(kept)
