"""What a reply is sent: the exact context window, built for each reply.

Two steps, so the blocking work stays off the UI thread:

- ``snapshot`` (UI thread, it reads the store): the conversation's system prompt, persona,
  memories (when memory is on for it), context policy and attached knowledge bases.
- ``build_prompt`` (the generation thread): counts tokens with the loaded engine's tokenizer
  (a blocking call), retrieves knowledge-base passages, and fits everything in ``n_ctx`` with
  ``tui.prompting.context.build_context``.

The reply streamer posts ``ContextPlanned`` with the figures; the chat log dims the messages
left out of the window, and the monitor can show what fills it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui.engine.protocol import ChatMessage, SamplingParams
from tui.prompting.context import (
    ContextPlan,
    Policy,
    TokenCounts,
    build_context,
    conversation_policy,
)
from tui.prompting.memory import Memory, MemoryStore, memory_on
from tui.prompting.personas import Persona, PersonaError, PersonaLibrary

if TYPE_CHECKING:
    from tui.engine.base import Engine
    from tui.store import ConversationMeta, Store, StoredMessage

KB_KEY = "kbs"
"""``ConversationMeta.extra["kbs"]``: attached knowledge bases (as ``tui.kb.prompt``)."""
KB_SHARE = 4
"""Knowledge-base passages may take up to 1/KB_SHARE of the window."""
DEFAULT_N_CTX = 4096

_SUMMARIES: OrderedDict[str, str] = OrderedDict()
"""Summaries of older turns, shared by every conversation of this process (see context.py)."""


class ContextPlanned(Message):
    """Posted (by the chat's ReplyStreamer, bubbling to its screen and the app) when the
    prompt of a reply is built: what fills the context window, and what was left out."""

    def __init__(self, conversation_id: str, tokens: TokenCounts, n_ctx: int,
                 left_out: tuple[str, ...] = (), notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.tokens = tokens
        self.n_ctx = n_ctx
        self.left_out = left_out
        self.notes = notes


@dataclass
class PromptRequest:
    """Everything read from the store for one reply (taken on the UI thread)."""

    conversation_id: str
    history: list[StoredMessage]
    system_prompt: str
    sampling: SamplingParams
    persona: Persona | None = None
    memories: list[Memory] = field(default_factory=list)
    policy: Policy = "drop_oldest"
    kbs: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    n_ctx: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BuiltPrompt:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    plan: ContextPlan
    n_ctx: int
    sources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def snapshot(store: Store, meta: ConversationMeta, history: Sequence[StoredMessage],
             sampling: SamplingParams, *, data_dir: Path | None = None,
             n_ctx: int | None = None) -> PromptRequest:
    """Read what the prompt needs (UI thread). Store failures leave that part out, noted."""
    notes: list[str] = []
    persona: Persona | None = None
    memories: list[Memory] = []
    try:
        persona = PersonaLibrary(store).for_conversation(meta)
    except Exception as exc:  # a broken table must not stop the reply
        notes.append(f"the persona could not be read: {exc}")
    if persona is not None:
        try:
            sampling = persona.apply_sampling(sampling)
        except PersonaError as exc:
            notes.append(f"the persona's sampling preset was ignored: {exc}")
    if memory_on(meta):
        try:
            memories = MemoryStore(store).list_memories(enabled_only=True)
        except Exception as exc:
            notes.append(f"memory could not be read: {exc}")
    raw_kbs = meta.extra.get(KB_KEY) or []
    kbs = [k for k in raw_kbs if isinstance(k, str)] if isinstance(raw_kbs, list) else []
    return PromptRequest(
        conversation_id=meta.id, history=list(history), system_prompt=meta.system_prompt,
        sampling=sampling, persona=persona, memories=memories,
        policy=conversation_policy(meta), kbs=kbs, data_dir=data_dir, n_ctx=n_ctx,
        notes=notes,
    )


class _TextCounter:
    """The engine's tokenizer, for plain text (what ``retrieve_for_prompt`` counts)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def count_tokens(self, text: str = "", messages: Sequence[object] = ()) -> int:
        return self.engine.count_tokens(text=text)


def _kb_block(request: PromptRequest, engine: Engine, n_ctx: int
              ) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Passages from the attached knowledge bases for the last user message."""
    if not request.kbs or request.data_dir is None:
        return "", [], []
    query = next((m.content for m in reversed(request.history) if m.role == "user"), "")
    if not query.strip():
        return "", [], []
    from tui.kb import KBLibrary
    from tui.kb.prompt import retrieve_for_prompt

    notes: list[str] = []
    library = KBLibrary(request.data_dir)
    opened = []
    for name in request.kbs:
        try:
            opened.append(library.open(name))
        except Exception as exc:
            notes.append(f"knowledge base {name!r} left out: {exc}")
    if not opened:
        return "", [], notes
    try:
        found = retrieve_for_prompt(opened, query, _TextCounter(engine),
                                    max(64, n_ctx // KB_SHARE))
    except Exception as exc:
        notes.append(f"knowledge-base search failed: {exc}")
        return "", [], notes
    sources = [{"n": s.n, "path": s.path, "start": s.start, "end": s.end, "label": s.label}
               for s in found.sources]
    return found.system_block, sources, notes


def build_prompt(request: PromptRequest, engine: Engine,
                 summary_cache: MutableMapping[str, str] | None = None) -> BuiltPrompt:
    """The messages for the reply, fitted in the window (generation thread: it counts
    tokens). Raises ``ContextError`` when even the newest message cannot fit."""
    info = engine.info
    n_ctx = int(getattr(info, "n_ctx", 0) or request.n_ctx or DEFAULT_N_CTX)
    sampling = request.sampling
    reserve = min(sampling.max_tokens, max(16, n_ctx // 2))
    if reserve < sampling.max_tokens:
        sampling = dataclasses.replace(sampling, max_tokens=reserve)
    notes = list(request.notes)
    kb_text, sources, kb_notes = _kb_block(request, engine, n_ctx)
    notes += kb_notes
    system = "\n\n".join(p for p in (request.system_prompt.strip(), kb_text) if p)
    plan = build_context(
        engine, history=request.history, n_ctx=n_ctx, system_prompt=system,
        persona=request.persona, memories=request.memories, reply_reserve=reserve,
        policy=request.policy,
        summary_cache=summary_cache if summary_cache is not None else _SUMMARIES,
    )
    notes += plan.notes
    return BuiltPrompt(plan.messages, sampling, plan, n_ctx, sources, notes)
