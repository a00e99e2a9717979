"""A scripted engine: replays a fixed reply as fast as asked. For UI benchmarks and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from tui.engine.errors import ToolsUnsupported
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationStats,
    ModelInfo,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from tui.i18n import _


def _info(name: str, n_ctx: int) -> ModelInfo:
    return ModelInfo(
        path=f"<scripted:{name}>", name=name, architecture="scripted", n_ctx=n_ctx,
        n_ctx_train=n_ctx, n_layers=0, n_params=0, size_bytes=0, chat_template="scripted",
        n_threads=1, n_threads_batch=1, n_gpu_layers=0, flash_attn=False, gpu_backend=False,
        load_seconds=0.0, worker_pid=0,
    )


class ScriptedEngine:
    """Streams ``reply`` split into ``tokens`` (or whitespace-kept words), one delta per token.

    ``delay_s`` sleeps between tokens (0: as fast as possible). ``reasoning`` is streamed first
    as reasoning deltas (a thinking model), cut at ``SamplingParams.reasoning_budget``.
    ``tool_steps``: while tools are offered, each generation asks for the next step's calls
    instead of answering (a model using tools); then it answers with the reply.
    """

    def __init__(
        self,
        reply: str | None = None,
        *,
        tokens: Sequence[str] | None = None,
        delay_s: float = 0.0,
        name: str = "scripted",
        n_ctx: int = 8192,
        load_delay_s: float = 0.0,
        reasoning: str | None = None,
        tool_steps: Sequence[Sequence[ToolCall]] = (),
    ) -> None:
        self.tool_steps = [tuple(step) for step in tool_steps]
        self._calls_tools = bool(self.tool_steps)
        self.tool_requests: list[tuple[tuple[ToolSpec, ...], ToolChoice]] = []
        self._tokens = list(tokens) if tokens is not None else _split(reply or "Hello!")
        self.reasoning_tokens = _split(reasoning) if reasoning else []
        self._delay_s = delay_s
        self._load_delay_s = load_delay_s
        self._cancel = threading.Event()
        self._info: ModelInfo | None = None
        self._name = name
        self._n_ctx = n_ctx
        self.requests: list[tuple[ChatMessage, ...]] = []
        self.samplings: list[SamplingParams] = []

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def alive(self) -> bool:
        return self._info is not None

    def load(self) -> ModelInfo:
        time.sleep(self._load_delay_s)
        self._info = _info(self._name, self._n_ctx)
        return self._info

    def generate(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingParams,
        *,
        raw_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> Iterator[EngineEvent]:
        if tools and not self._calls_tools:
            raise ToolsUnsupported(_("the scripted engine cannot call tools"))
        self._cancel.clear()
        if tools:
            self.tool_requests.append((tuple(tools), tool_choice))
            if self.tool_steps:
                yield from self._call_tools(messages, self.tool_steps.pop(0))
                return
        self.requests.append(tuple(messages))
        self.samplings.append(sampling)
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        thought: list[str] = []
        budget = sampling.reasoning_budget
        thinking = self.reasoning_tokens if budget < 0 else self.reasoning_tokens[:budget]
        for token in thinking:
            if self._cancel.is_set():
                break
            if self._delay_s:
                time.sleep(self._delay_s)
            if first is None:
                first = time.perf_counter() - start
            thought.append(token)
            yield ReasoningDelta(0, token)
        thought_s = time.perf_counter() - start
        reason = "length" if len(self._tokens) > sampling.max_tokens else "stop"
        for token in self._tokens[: sampling.max_tokens]:
            if self._cancel.is_set():
                reason = "cancelled"
                break
            if self._delay_s:
                time.sleep(self._delay_s)
            if first is None:
                first = time.perf_counter() - start
            parts.append(token)
            yield TextDelta(0, token)
        elapsed = time.perf_counter() - start
        if self._cancel.is_set():
            reason = "cancelled"
        n = len(parts) + len(thought)
        prompt_tokens = self.count_tokens(raw_prompt or "", () if raw_prompt else messages)
        stats = GenerationStats(
            prompt_tokens=prompt_tokens,
            prompt_tokens_per_s=0.0, generated_tokens=n,
            generation_tokens_per_s=n / elapsed if elapsed > 0 else 0.0,
            time_to_first_token_s=first or 0.0, reused_tokens=0,
            evaluated_prompt_tokens=prompt_tokens,
            stop_reason=reason,  # type: ignore[arg-type]
            total_seconds=elapsed, reasoning_tokens=len(thought),
            reasoning_seconds=thought_s if thought else 0.0,
        )
        yield Done(0, "".join(parts), stats, reasoning="".join(thought))

    def _call_tools(self, messages: Sequence[ChatMessage],
                    calls: Sequence[ToolCall]) -> Iterator[EngineEvent]:
        self.requests.append(tuple(messages))
        for index, call in enumerate(calls):
            yield ToolCallDelta(0, index, call.id, call.name, call.arguments)
        # nothing is cached: every prompt token counts as evaluated, as in a reply
        prompt_tokens = self.count_tokens(messages=messages)
        stats = GenerationStats(
            prompt_tokens=prompt_tokens, prompt_tokens_per_s=0.0,
            generated_tokens=len(calls) * 8, generation_tokens_per_s=0.0,
            time_to_first_token_s=0.0, reused_tokens=0, evaluated_prompt_tokens=prompt_tokens,
            stop_reason="tool_calls", total_seconds=0.0,
        )
        yield Done(0, "", stats, tool_calls=tuple(calls))

    def cancel(self) -> None:
        self._cancel.set()

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        body = text + "".join(m.content for m in messages)
        return len(body.split()) + 4 * len(messages)

    def unload(self) -> None:
        self._info = None


def _split(text: str) -> list[str]:
    """Split into word-like tokens that join back to ``text`` exactly."""
    out: list[str] = []
    current = ""
    for ch in text:
        if ch.isspace() and current and not current.isspace():
            out.append(current)
            current = ch
        else:
            current += ch
    if current:
        out.append(current)
    return out
