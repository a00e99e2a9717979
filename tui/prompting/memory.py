"""Memory that outlives a session: facts and preferences the user pins.

Memories live in the store's "memory" table and are injected into the system prompt within a
token budget. The block is built deterministically (oldest first, same wording), so the
prompt prefix only changes when the memories do. A memory larger than the whole budget is
reported and left out, never cut.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from tui.display import count
from tui.engine.protocol import ChatMessage, Done, EngineEvent, SamplingParams
from tui.i18n import _
from tui.prompting.templates import PromptingError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tui.store import ConversationMeta, Store

TABLE = "memory"
DEFAULT_BUDGET = 256
HEADER = "What you know about the user (from earlier conversations):"


class MemoryStoreError(PromptingError, LookupError):
    pass


class Counter(Protocol):
    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int: ...


class Generator(Counter, Protocol):
    def generate(self, messages: Sequence[ChatMessage], sampling: SamplingParams, *,
                 raw_prompt: str | None = None) -> Iterator[EngineEvent]: ...


@dataclass(frozen=True)
class Memory:
    id: str
    text: str
    enabled: bool = True
    created: float = 0.0
    important: bool = False
    """Important memories are chosen first when the budget is tight."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "enabled": self.enabled,
                "created": self.created, "important": self.important}

    @classmethod
    def from_dict(cls, doc: Any) -> Memory:
        return cls(id=str(doc["id"]), text=str(doc.get("text", "")),
                   enabled=bool(doc.get("enabled", True)),
                   created=float(doc.get("created", 0.0)),
                   important=bool(doc.get("important", False)))


class MemoryStore:
    """The user's memories in the store's "memory" table, oldest first."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _table(self) -> Any:
        return self._store.table(TABLE)

    def list_memories(self, *, enabled_only: bool = False) -> list[Memory]:
        out = []
        for doc in self._table().all():
            try:
                memory = Memory.from_dict(doc)
            except (KeyError, TypeError, ValueError):
                continue
            if memory.enabled or not enabled_only:
                out.append(memory)
        return sorted(out, key=lambda m: (m.created, m.id))

    def get(self, memory_id: str) -> Memory:
        """By id, or by a prefix of it that matches exactly one memory."""
        memories = self.list_memories()
        exact = [m for m in memories if m.id == memory_id]
        found = exact or [m for m in memories if memory_id and m.id.startswith(memory_id)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise MemoryStoreError(_("no memory {memory_id!r}", memory_id=memory_id))
        raise MemoryStoreError(_("{memory_id!r} matches {count} memories: give more of the id",
                                 memory_id=memory_id, count=len(found)))

    def add(self, text: str, *, important: bool = False) -> Memory:
        clean = " ".join(text.split())
        if not clean:
            raise MemoryStoreError(_("a memory cannot be empty"))
        taken = {m.id for m in self.list_memories()}
        memory_id = _new_id(taken)
        memory = Memory(memory_id, clean, True, time.time(), important)
        self._table().insert(memory.to_dict())
        return memory

    def update(self, memory_id: str, **changes: Any) -> Memory:
        """Change ``text``, ``enabled`` or ``important``."""
        old = self.get(memory_id)
        bad = sorted(set(changes) - {"text", "enabled", "important"})
        if bad:
            raise MemoryStoreError(_("cannot change {value!r} of a memory", value=bad[0]))
        if "text" in changes:
            changes["text"] = " ".join(str(changes["text"]).split())
            if not changes["text"]:
                raise MemoryStoreError(_("a memory cannot be empty"))
        new = replace(old, **changes)
        self._table().update(new.to_dict(), _by_id(old.id))
        return new

    def set_enabled(self, memory_id: str, enabled: bool) -> Memory:
        return self.update(memory_id, enabled=enabled)

    def remove(self, memory_id: str) -> Memory:
        memory = self.get(memory_id)
        self._table().remove(_by_id(memory.id))
        return memory


def _new_id(taken: set[str]) -> str:
    while True:
        candidate = f"m{secrets.token_hex(3)}"
        if candidate not in taken:
            return candidate


def _by_id(memory_id: str) -> Any:
    from tinydb import where

    return where("id") == memory_id


def memory_on(meta: ConversationMeta) -> bool:
    """Whether memory is injected in this conversation (on unless turned off)."""
    return meta.options.memory


def set_conversation_memory(store: Store, cid: str, on: bool) -> ConversationMeta:
    return store.update_options(cid, memory=on)


# --- the block injected into the system prompt -----------------------------------------------


@dataclass(frozen=True)
class MemoryBlock:
    text: str
    """The text for the system message ("" when no memory fits or none is given)."""
    included: tuple[str, ...]
    left_out: tuple[str, ...]
    tokens: int
    """Tokens of ``text`` counted alone (the cost in the prompt is measured by the caller)."""
    notes: tuple[str, ...]


def format_block(memories: Sequence[Memory]) -> str:
    if not memories:
        return ""
    return "\n".join([HEADER, *(f"- {m.text}" for m in memories)])


def memory_block(engine: Counter, memories: Sequence[Memory],
                 budget: int = DEFAULT_BUDGET) -> MemoryBlock:
    """The enabled memories that fit in ``budget`` tokens: important ones first, then the
    most recent; written oldest first so a new memory extends the text instead of
    reshuffling it."""
    candidates = [m for m in memories if m.enabled and m.text.strip()]
    if not candidates:
        return MemoryBlock("", (), (), 0, ())
    notes: list[str] = []
    priority = sorted(candidates, key=lambda m: (m.important, m.created, m.id), reverse=True)
    header = engine.count_tokens(text=HEADER + "\n")
    chosen: list[Memory] = []
    left: list[Memory] = []
    too_big: list[Memory] = []
    used = header
    for memory in priority:
        cost = engine.count_tokens(text=f"- {memory.text}\n")
        if header + cost > budget:
            notes.append(_("memory {id} is {count}, more than the whole memory budget of "
                           "{budget}: left out (shorten it or raise the budget)",
                           id=memory.id, count=count(cost, 'token'), budget=budget))
            too_big.append(memory)
        elif used + cost > budget:
            left.append(memory)
        else:
            chosen.append(memory)
            used += cost
    ordered = sorted(chosen, key=lambda m: (m.created, m.id))
    text = format_block(ordered)
    tokens = engine.count_tokens(text=text) if text else 0
    while ordered and tokens > budget:  # token merges across lines: drop the least wanted
        drop = min(ordered, key=lambda m: (m.important, m.created, m.id))
        ordered.remove(drop)
        left.append(drop)
        text = format_block(ordered)
        tokens = engine.count_tokens(text=text) if text else 0
    if left:
        out_of = count(len(candidates), "memory", "memories")
        notes.append(_("memory over budget: {count} of {out_of} left out (budget {count2})",
                       count=len(left), out_of=out_of, count2=count(budget, 'token')))
    return MemoryBlock(text, tuple(m.id for m in ordered),
                       tuple(m.id for m in (*too_big, *left)), tokens, tuple(notes))


# --- proposals -------------------------------------------------------------------------------

PROPOSE_SYSTEM = ("You read conversations and note lasting facts about the user: their name, "
                  "job, projects, preferences and constraints.")
PROPOSE_PROMPT = """Here is a conversation between a user and an assistant.

{transcript}

List the facts about the user that are worth remembering for future conversations, such as \
their name, work, projects and preferences. Write one short fact per line, each starting \
with "- ". Do not list anything about the assistant. If there is nothing worth remembering, \
write NONE."""
_BULLET = re.compile(r"^\s*(?:[-*•‣·]|\d+[.)]|\(\d+\))\s*")
_EMPTY = {"none", "none.", "n/a", "nothing", "no facts", "nothing worth remembering"}


def transcript(messages: Sequence[ChatMessage], *, limit_chars: int = 0) -> str:
    """"User: ..." / "Assistant: ..." lines (system messages left out)."""
    lines = [f"{'User' if m.role == 'user' else 'Assistant'}: {m.content.strip()}"
             for m in messages if m.role != "system" and m.content.strip()]
    text = "\n\n".join(lines)
    if limit_chars and len(text) > limit_chars:
        text = "[...]\n" + text[-limit_chars:]
    return text


def parse_proposals(text: str, existing: Sequence[str] = (), limit: int = 10) -> list[str]:
    """One candidate per line; bullets and numbering stripped, headings, "NONE", duplicates
    and facts already remembered dropped."""
    seen = {" ".join(e.lower().split()).rstrip(".") for e in existing}
    out: list[str] = []
    for raw in text.splitlines():
        line = _BULLET.sub("", raw.replace("**", "")).strip().strip('"').strip()
        key = " ".join(line.lower().split()).rstrip(".")
        if (not line or key in _EMPTY or line.endswith(":") or len(line) < 4
                or len(line) > 300 or key in seen):
            continue
        seen.add(key)
        out.append(line)
        if len(out) >= limit:
            break
    return out


def propose_memories(engine: Generator, messages: Sequence[ChatMessage], *,
                     existing: Sequence[str] = (), max_tokens: int = 200,
                     limit_chars: int = 6000) -> list[str]:
    """Ask the model for facts worth remembering from a conversation; the user then accepts
    or rejects each (``MemoryStore.add`` for the accepted ones)."""
    text = transcript(messages, limit_chars=limit_chars)
    if not text:
        return []
    prompt = (ChatMessage("system", PROPOSE_SYSTEM),
              ChatMessage("user", PROPOSE_PROMPT.format(transcript=text)))
    sampling = SamplingParams(temperature=0.2, top_p=0.9, max_tokens=max_tokens, seed=0)
    reply = ""
    for event in engine.generate(prompt, sampling):
        if isinstance(event, Done):
            if event.error:
                raise PromptingError(_("could not propose memories: {error}", error=event.error))
            reply = event.text
    return parse_proposals(reply, existing)
