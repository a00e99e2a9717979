"""What a reply is sent: the exact context window, built for each reply.

Two steps, so the blocking work stays off a UI thread:

- ``snapshot`` (reads the store): the conversation's system prompt, persona, memories (when
  memory is on for it), context policy and attached knowledge bases. ``for_prompt`` makes
  the same request for a one-off prompt (``lmdesk ask``).
- ``build_prompt`` (the generation thread): counts tokens with the loaded engine's tokenizer
  (a blocking call), retrieves knowledge-base passages, and fits everything in ``n_ctx`` with
  ``tui.prompting.context.build_context``.

The app, ``ask`` and ``serve`` all build prompts here, so they send the same thing for the
same conversation.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.engine.protocol import ChatMessage, SamplingParams
from tui.i18n import _
from tui.prompting.context import ContextPlan, Policy, build_context
from tui.prompting.memory import Memory, MemoryStore
from tui.prompting.personas import Persona, PersonaError, PersonaLibrary

if TYPE_CHECKING:
    from tui.engine.base import Engine
    from tui.store import ConversationMeta, Store, StoredMessage

KB_SHARE = 4
"""Knowledge-base passages may take up to 1/KB_SHARE of the window."""
DEFAULT_N_CTX = 4096

_SUMMARIES: OrderedDict[str, str] = OrderedDict()
"""Summaries of older turns, shared by every conversation of this process (see context.py)."""


@dataclass
class PromptRequest:
    """Everything read from the store for one reply (taken on the UI thread)."""

    conversation_id: str
    history: list[Any]
    """``StoredMessage``-like entries (id, role, content, status), oldest first."""
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
    """Every source the prompt offers, [1] first (the reply lists those it used)."""
    notes: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    """The numbered passages behind ``sources``, in the same order."""


def snapshot(store: Store, meta: ConversationMeta, history: Sequence[StoredMessage],
             sampling: SamplingParams, *, data_dir: Path | None = None,
             n_ctx: int | None = None) -> PromptRequest:
    """Read what the prompt needs from the store (the persona's sampling preset is applied to
    ``sampling``). Store failures leave that part out, noted."""
    notes: list[str] = []
    memories: list[Memory] = []
    persona, note = conversation_persona(store, meta)
    if note:
        notes.append(note)
    if persona is not None:
        try:
            sampling = persona.apply_sampling(sampling)
        except PersonaError as exc:
            notes.append(_("the persona's sampling preset was ignored: {exc}", exc=exc))
    if meta.options.memory:
        memories, note = enabled_memories(store)
        if note:
            notes.append(note)
    return PromptRequest(
        conversation_id=meta.id, history=list(history), system_prompt=meta.system_prompt,
        sampling=sampling, persona=persona, memories=memories,
        policy=meta.options.context_policy, kbs=list(meta.options.knowledge_bases),
        data_dir=data_dir, n_ctx=n_ctx, notes=notes,
    )


def conversation_persona(store: Store, meta: ConversationMeta) -> tuple[Persona | None, str]:
    """The conversation's persona, and a note when it could not be read."""
    try:
        return PersonaLibrary(store).for_conversation(meta), ""
    except Exception as exc:  # a broken table must not stop the reply
        return None, _("the persona could not be read: {exc}", exc=exc)


def enabled_memories(store: Store) -> tuple[list[Memory], str]:
    """The memories to inject, and a note when they could not be read."""
    try:
        return MemoryStore(store).list_memories(enabled_only=True), ""
    except Exception as exc:
        return [], _("memory could not be read: {exc}", exc=exc)


@dataclass(frozen=True)
class _Prompt:
    """A one-off prompt's history entry (``for_prompt``): what build_context reads."""

    id: str
    role: str
    content: str
    status: str = "done"


def for_prompt(prompt: str, sampling: SamplingParams, *, system: str = "",
               store: Store | None = None, memory: bool = True, kbs: Sequence[str] = (),
               persona: Persona | None = None, data_dir: Path | None = None,
               n_ctx: int | None = None) -> PromptRequest:
    """The request for a single prompt (``lmdesk ask``): the same memory, persona and
    knowledge bases a conversation would get."""
    notes: list[str] = []
    memories: list[Memory] = []
    if memory and store is not None:
        memories, note = enabled_memories(store)
        if note:
            notes.append(note)
    history: list[Any] = [_Prompt("prompt", "user", prompt)]
    return PromptRequest(
        conversation_id="", history=history, system_prompt=system, sampling=sampling,
        persona=persona, memories=memories, kbs=list(kbs), data_dir=data_dir, n_ctx=n_ctx,
        notes=notes,
    )


class _TextCounter:
    """The engine's tokenizer, for plain text (what ``retrieve_for_prompt`` counts)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def count_tokens(self, text: str = "", messages: Sequence[object] = ()) -> int:
        return self.engine.count_tokens(text=text)


@dataclass
class _KBBlock:
    text: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _kb_block(request: PromptRequest, engine: Engine, n_ctx: int) -> _KBBlock:
    """Passages from the attached knowledge bases for the last user message."""
    if not request.kbs or request.data_dir is None:
        return _KBBlock()
    query = next((m.content for m in reversed(request.history) if m.role == "user"), "")
    if not query.strip():
        return _KBBlock()
    from tui.kb import KBLibrary
    from tui.kb.prompt import retrieve_for_prompt

    notes: list[str] = []
    library = KBLibrary(request.data_dir)
    opened = []
    for name in request.kbs:
        try:
            opened.append(library.open(name))
        except Exception as exc:
            notes.append(_("knowledge base {name!r} left out: {exc}", name=name, exc=exc))
    if not opened:
        return _KBBlock(notes=notes)
    try:
        found = retrieve_for_prompt(opened, query, _TextCounter(engine),
                                    max(64, n_ctx // KB_SHARE))
    except Exception as exc:
        notes.append(_("knowledge-base search failed: {exc}", exc=exc))
        return _KBBlock(notes=notes)
    sources = [{"n": s.n, "path": s.path, "start": s.start, "end": s.end, "label": s.label,
                "kb": s.kb, "sha1": s.sha1}
               for s in found.sources]
    return _KBBlock(found.system_block, sources, list(found.passages), notes)


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
    kb = _kb_block(request, engine, n_ctx)
    notes += kb.notes
    system = "\n\n".join(p for p in (request.system_prompt.strip(), kb.text) if p)
    plan = build_context(
        engine, history=request.history, n_ctx=n_ctx, system_prompt=system,
        persona=request.persona, memories=request.memories, reply_reserve=reserve,
        policy=request.policy,
        summary_cache=summary_cache if summary_cache is not None else _SUMMARIES,
    )
    notes += plan.notes
    return BuiltPrompt(plan.messages, sampling, plan, n_ctx, kb.sources, notes, kb.passages)
