"""The context window, exact: what is sent, what is left out, and what each part costs.

Tokens are counted with the loaded model's tokenizer (``engine.count_tokens``), so system
prompt + memory + examples + history + the room kept for the reply fit in ``n_ctx``.

The prompt prefix is kept stable between turns so llama.cpp reuses its KV cache:

- the system message (persona, system prompt, memory, summary of older turns) is built the
  same way every turn, so it only changes when one of those does;
- older turns are dropped (or summarised) in whole chunks of about ``chunk_fraction`` of the
  window, on boundaries fixed by the conversation itself, so the first kept turn stays put
  for many turns and a follow-up turn evaluates only its new tokens.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from tui.engine.protocol import ChatMessage, Done, Role, SamplingParams, ToolCall
from tui.i18n import _, n_
from tui.prompting.memory import (
    DEFAULT_BUDGET,
    Counter,
    Generator,
    Memory,
    memory_block,
    transcript,
)
from tui.prompting.personas import (
    Example,
    Persona,
    examples_as_messages,
)
from tui.prompting.templates import PromptingError
from tui.store.parts import TextPart, ToolCallPart, ToolResultPart

if TYPE_CHECKING:
    from tui.store import ConversationMeta, Store

Policy = Literal["drop_oldest", "summarize"]
POLICIES: tuple[Policy, ...] = ("drop_oldest", "summarize")
SUMMARY_HEADER = "Summary of the earlier part of this conversation:"


def conversation_policy(meta: ConversationMeta) -> Policy:
    """The conversation's context policy ("drop_oldest" unless set to "summarize")."""
    return meta.options.context_policy


def set_conversation_policy(store: Store, cid: str, policy: Policy) -> ConversationMeta:
    if policy not in POLICIES:
        raise ContextError(_("unknown context policy {policy!r} (use {join})",
                             policy=policy, join=' or '.join(POLICIES)))
    return store.update_options(cid, context_policy=policy)


class ContextError(PromptingError, ValueError):
    """The conversation cannot be fitted into the window; nothing was changed or lost."""


class HistoryMessage(Protocol):
    """What is read from a stored message (``tui.store.StoredMessage``)."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class TokenCounts:
    """Tokens per part of the prompt (for the context bar). They add up to the exact count of
    the chat-formatted prompt; template overhead is counted in the part it belongs to."""

    system: int
    memory: int
    examples: int
    summary: int
    history: int
    reserve: int
    n_ctx: int

    @property
    def prompt(self) -> int:
        return self.system + self.memory + self.examples + self.summary + self.history

    @property
    def used(self) -> int:
        return self.prompt + self.reserve

    @property
    def free(self) -> int:
        return self.n_ctx - self.used


@dataclass(frozen=True)
class ContextPlan:
    messages: tuple[ChatMessage, ...]
    """What to send to the engine."""
    left_out: tuple[str, ...]
    """Ids of history messages outside the window (dropped or summarised): the app dims them."""
    tokens: TokenCounts
    notes: tuple[str, ...] = ()
    summary: str | None = None
    summary_key: str | None = None
    """Identifies the summarised turns; a summary may be persisted under this key and given
    back through ``summary_cache``."""
    kept_ids: tuple[str, ...] = ()
    memory_ids: tuple[str, ...] = ()
    """The memories that made it into the prompt."""


# --- token counting with a cache -------------------------------------------------------------


class TokenCache:
    """Counts by (model, text): a message already counted is not tokenized again next turn."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: int) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


_TOKENS = TokenCache()
_SUMMARIES: MutableMapping[str, str] = OrderedDict()


class CachedCounter:
    """``count_tokens`` of an engine, remembered per model."""

    def __init__(self, engine: Counter, cache: TokenCache | None = None) -> None:
        self.engine = engine
        info = getattr(engine, "info", None)
        self.model = str(getattr(info, "path", "")) or f"{type(engine).__name__}-{id(engine)}"
        self.cache = cache if cache is not None else _TOKENS

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        if messages:
            key = "M" + _digest([f"{m.role}\x1f{m.content}" for m in messages])
        else:
            key = "T" + (text if len(text) < 200 else _digest([text]))
        found = self.cache.get((self.model, key))
        if found is None:
            found = self.engine.count_tokens(text=text, messages=tuple(messages))
            self.cache.put((self.model, key), found)
        return found


def _digest(parts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()


# --- turns -------------------------------------------------------------------------------------


@dataclass
class _Turn:
    ids: list[str] = field(default_factory=list)
    messages: list[ChatMessage] = field(default_factory=list)
    originals: list[tuple[str, str]] = field(default_factory=list)
    tokens: int = 0
    chunk: int = 0
    keep: bool = False


def _turns(history: Sequence[HistoryMessage]) -> list[_Turn]:
    """User message(s) and the replies that follow; failed and empty messages left out, and
    two in a row from one role joined (as ``build_messages`` does)."""
    turns: list[_Turn] = []
    for m in history:
        steps = tool_steps(m)
        if m.status == "error" or m.role not in ("user", "assistant") or (
                not m.content.strip() and not steps):
            continue
        role: Role = "user" if m.role == "user" else "assistant"
        if not turns or (role == "user" and turns[-1].messages[-1].role != "user"):
            turns.append(_Turn())
        turn = turns[-1]
        turn.ids.append(m.id)
        if steps:
            turn.messages.extend(steps)
        elif turn.messages and turn.messages[-1].role == role:
            turn.messages[-1] = ChatMessage(role, f"{turn.messages[-1].content}\n\n{m.content}")
        else:
            turn.messages.append(ChatMessage(role, m.content))
        turn.originals.append((m.id, m.content))
    return turns


def tool_steps(message: HistoryMessage) -> list[ChatMessage]:
    """An assistant turn that called tools, as the model saw it: each assistant message with
    its calls, the tool results, then the final answer; [] for a turn without tools. Its
    reasoning is never sent back."""
    parts = getattr(message, "parts", ())
    if not any(isinstance(p, ToolCallPart) for p in parts):
        return []
    out: list[ChatMessage] = []
    text = ""
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []

    def flush() -> None:
        nonlocal text
        if calls:
            out.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
            out.extend(results)
            text = ""
            calls.clear()
            results.clear()

    for part in parts:
        if isinstance(part, TextPart):
            flush()
            text = part.text
        elif isinstance(part, ToolCallPart):
            calls.append(ToolCall(part.call_id, part.name, part.arguments))
        elif isinstance(part, ToolResultPart):
            results.append(ChatMessage("tool", part.content, tool_call_id=part.call_id,
                                       name=part.name))
    flush()
    if text:
        out.append(ChatMessage("assistant", text))
    return out


def _message_overhead(counter: CachedCounter) -> int:
    """Tokens the chat template adds around one message (measured once per model)."""
    probe = ChatMessage("system", "x")
    with_user = counter.count_tokens(messages=(probe, ChatMessage("user", "hello")))
    return max(0, with_user - counter.count_tokens(messages=(probe,))
               - counter.count_tokens(text="hello"))


# --- summaries ---------------------------------------------------------------------------------

SUMMARY_PROMPT = (
    "Summarize the conversation below in one short paragraph of at most {words} words. Keep "
    "names, numbers, decisions, what the user asked for and anything still unresolved. Write "
    "only the summary.\n\n{previous}Conversation:\n{transcript}"
)


def summarize_turns(engine: Generator, messages: Sequence[ChatMessage], *, previous: str = "",
                    max_tokens: int = 200) -> str:
    """One paragraph summarising ``messages`` (continuing ``previous``, an earlier summary)."""
    text = transcript(messages)
    info = getattr(engine, "info", None)
    room = int(getattr(info, "n_ctx", 0) or 0) - max_tokens - 200
    if room > 0:
        size = engine.count_tokens(text=text)
        if size > room:
            text = transcript(messages, limit_chars=max(200, int(len(text) * room / size * 0.9)))
    earlier = f"Summary of what came before:\n{previous}\n\n" if previous else ""
    prompt = (ChatMessage("system", "You summarise conversations accurately and briefly."),
              ChatMessage("user", SUMMARY_PROMPT.format(
                  words=max(20, max_tokens * 2 // 3), previous=earlier, transcript=text)))
    sampling = SamplingParams(temperature=0.2, top_p=0.9, max_tokens=max_tokens, seed=0)
    reply = ""
    for event in engine.generate(prompt, sampling):
        if isinstance(event, Done):
            if event.error:
                raise PromptingError(_("could not summarise the earlier turns: {error}",
                                       error=event.error))
            reply = event.text
    summary = " ".join(reply.split())
    if not summary:
        raise PromptingError(_("could not summarise the earlier turns: the model wrote nothing"))
    return summary


def _summary_for(engine: Generator, turns: Sequence[_Turn], upto: int,
                 cache: MutableMapping[str, str], max_tokens: int) -> tuple[str, str]:
    """The summary of the droppable turns in chunks < ``upto``, built chunk by chunk, each
    step cached so a turn never re-summarises what an earlier turn already did."""
    keys: list[str] = []
    parts: list[str] = []
    for j in range(upto + 1):
        keys.append("S" + _digest(parts))
        parts += [f"{mid}\x1f{text}" for t in turns if t.chunk == j and not t.keep
                  for mid, text in t.originals]
    start = next((j for j in range(upto, 0, -1) if keys[j] in cache), 0)
    summary = cache[keys[start]] if start else ""
    for j in range(start, upto):
        group = [m for t in turns if t.chunk == j and not t.keep for m in t.messages]
        if group:
            summary = summarize_turns(engine, group, previous=summary, max_tokens=max_tokens)
        cache[keys[j + 1]] = summary
        if isinstance(cache, OrderedDict):
            while len(cache) > 256:
                cache.popitem(last=False)
    return summary, keys[upto]


# --- the plan ----------------------------------------------------------------------------------


def _system_text(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def build_context(
    engine: Generator,
    *,
    history: Sequence[HistoryMessage],
    n_ctx: int,
    system_prompt: str = "",
    persona: Persona | None = None,
    memories: Sequence[Memory] = (),
    examples: Sequence[Example] = (),
    reply_reserve: int = 512,
    policy: Policy = "drop_oldest",
    pinned_ids: Collection[str] = (),
    memory_budget: int = DEFAULT_BUDGET,
    chunk_fraction: float = 0.25,
    summary_cache: MutableMapping[str, str] | None = None,
    summary_tokens: int = 200,
) -> ContextPlan:
    """The messages for the next reply and what each part costs (see the module doc).

    ``memories``: pass ``()`` when memory is off for the conversation (``memory_on``).
    Persona examples come before ``examples``. A ``ContextError`` when even the newest turn
    and the pinned messages cannot fit."""
    if policy not in POLICIES:
        raise ContextError(_("unknown context policy {policy!r} (use {join})",
                             policy=policy, join=' or '.join(POLICIES)))
    if not 0 <= reply_reserve < n_ctx:
        raise ContextError(_("the reply reserve ({reply_reserve}) must be smaller than the "
                             "context window ({n_ctx})", reply_reserve=reply_reserve, n_ctx=n_ctx))
    counter = CachedCounter(engine)
    notes: list[str] = []
    base = _system_text(persona.system_block() if persona else "", system_prompt)
    mem = memory_block(counter, memories, memory_budget)
    notes += mem.notes
    shots = examples_as_messages([*(persona.examples if persona else ()), *examples])
    turns = _turns(history)
    pinned = set(pinned_ids)
    overhead = _message_overhead(counter) if turns else 0
    start = 0
    size = max(1, int(n_ctx * chunk_fraction))
    for i, turn in enumerate(turns):
        turn.tokens = sum(counter.count_tokens(text=m.content) + overhead for m in turn.messages)
        turn.chunk = start // size
        turn.keep = i == len(turns) - 1 or any(mid in pinned for mid in turn.ids)
        start += turn.tokens
    for mid, text in (o for t in turns if t.keep for o in t.originals):
        cost = counter.count_tokens(text=text) + overhead
        if cost > n_ctx - reply_reserve:
            raise ContextError(
                _("message {mid} is {cost:,} tokens but the context window holds {n_ctx:,} "
                  "({reply_reserve:,} kept for the reply): shorten or split it, or load the "
                  "model with a larger n_ctx. Nothing was changed.",
                  mid=mid, cost=cost, n_ctx=n_ctx, reply_reserve=reply_reserve))
    cache = summary_cache if summary_cache is not None else _SUMMARIES
    last_chunk = max((t.chunk for t in turns), default=0)
    # what to give up, in order, when even the newest turn does not fit
    variants: list[tuple[tuple[ChatMessage, ...], str, str]] = [(shots, mem.text, "")]
    if shots:
        variants.append(((), mem.text, _("the examples were left out: they don't fit")))
    if mem.text:
        variants.append(((), "", _("the examples and memory were left out: they don't fit")
                         if shots else _("memory was left out: it doesn't fit")))
    allowance = summary_tokens + 16 if policy == "summarize" else 0
    for use_shots, mem_text, give_up in variants:
        fixed_msgs = _assemble(_system_text(base, mem_text), use_shots, [])
        fixed = counter.count_tokens(messages=fixed_msgs) if fixed_msgs else 0
        for cut in range(last_chunk + 2):
            kept = [t for t in turns if t.keep or t.chunk >= cut]
            dropped = len(kept) < len(turns)
            estimate = fixed + sum(t.tokens for t in kept) + reply_reserve
            if estimate + (allowance if dropped else 0) > n_ctx:
                continue
            summary, key = "", None
            if dropped and policy == "summarize":
                try:
                    summary, key = _summary_for(engine, turns, cut, cache, summary_tokens)
                except PromptingError as exc:
                    note = _("{exc}: they were left out instead", exc=exc)
                    if note not in notes:
                        notes.append(note)
            tail = f"{SUMMARY_HEADER}\n{summary}" if summary else ""
            messages = _assemble(_system_text(base, mem_text, tail), use_shots, kept)
            total = counter.count_tokens(messages=messages)
            if total + reply_reserve > n_ctx:
                continue
            if give_up:
                notes.append(give_up)
            return _plan(counter, messages, base, mem_text, tail, use_shots, turns, kept,
                         total, reply_reserve, n_ctx, notes, summary or None, key,
                         mem.included if mem_text else ())
    need = sum(t.tokens for t in turns if t.keep)
    raise ContextError(
        _("the newest message and the pinned ones need about {need:,} tokens, and with the "
          "system prompt and {reply_reserve:,} kept for the reply that is more than the "
          "{n_ctx:,}-token context window: unpin some messages, shorten the system prompt, or "
          "load the model with a larger n_ctx. Nothing was changed.",
          need=need, reply_reserve=reply_reserve, n_ctx=n_ctx))


def _assemble(system: str, shots: Sequence[ChatMessage],
              kept: Sequence[_Turn]) -> tuple[ChatMessage, ...]:
    head = (ChatMessage("system", system),) if system else ()
    return (*head, *shots, *(m for t in kept for m in t.messages))


def _plan(counter: CachedCounter, messages: tuple[ChatMessage, ...], base: str, mem_text: str,
          tail: str, shots: Sequence[ChatMessage], turns: Sequence[_Turn],
          kept: Sequence[_Turn], total: int, reserve: int, n_ctx: int, notes: list[str],
          summary: str | None, key: str | None, memory_ids: tuple[str, ...]) -> ContextPlan:
    def count(system: str, with_shots: bool = False) -> int:
        msgs = _assemble(system, shots if with_shots else (), [])
        return counter.count_tokens(messages=msgs) if msgs else 0

    t_base = count(base)
    t_mem = count(_system_text(base, mem_text))
    t_sys = count(_system_text(base, mem_text, tail))
    t_shots = count(_system_text(base, mem_text, tail), with_shots=True)
    dropped = [t for t in turns if t not in kept]
    left_out = tuple(mid for t in dropped for mid in t.ids)
    if dropped:
        notes.append(
            n_("{count} earlier message summarised to fit the {n_ctx:,}-token window",
               "{count} earlier messages summarised to fit the {n_ctx:,}-token window",
               len(left_out), n_ctx=n_ctx) if summary else
            n_("{count} earlier message left out to fit the {n_ctx:,}-token window",
               "{count} earlier messages left out to fit the {n_ctx:,}-token window",
               len(left_out), n_ctx=n_ctx))
    tokens = TokenCounts(system=t_base, memory=t_mem - t_base, summary=t_sys - t_mem,
                         examples=t_shots - t_sys, history=total - t_shots, reserve=reserve,
                         n_ctx=n_ctx)
    return ContextPlan(messages=messages, left_out=left_out, tokens=tokens, notes=tuple(notes),
                       summary=summary, summary_key=key,
                       kept_ids=tuple(mid for t in kept for mid in t.ids),
                       memory_ids=memory_ids)
