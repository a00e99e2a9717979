"""A scripted engine: replays a fixed reply as fast as asked. For UI benchmarks and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    TextDelta,
)


def _info(name: str, n_ctx: int) -> ModelInfo:
    return ModelInfo(
        path=f"<scripted:{name}>", name=name, architecture="scripted", n_ctx=n_ctx,
        n_ctx_train=n_ctx, n_layers=0, n_params=0, size_bytes=0, chat_template="scripted",
        n_threads=1, n_threads_batch=1, n_gpu_layers=0, flash_attn=False, gpu_backend=False,
        load_seconds=0.0, worker_pid=0,
    )


class ScriptedEngine:
    """Streams ``reply`` split into ``tokens`` (or whitespace-kept words), one delta per token.

    ``delay_s`` sleeps between tokens (0: as fast as possible). A reply function may be given
    instead of a fixed text, to answer from the prompt.
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
    ) -> None:
        self._tokens = list(tokens) if tokens is not None else _split(reply or "Hello!")
        self._delay_s = delay_s
        self._load_delay_s = load_delay_s
        self._cancel = threading.Event()
        self._info: ModelInfo | None = None
        self._name = name
        self._n_ctx = n_ctx
        self.requests: list[tuple[ChatMessage, ...]] = []

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
    ) -> Iterator[EngineEvent]:
        self._cancel.clear()
        self.requests.append(tuple(messages))
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
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
        n = len(parts)
        stats = GenerationStats(
            prompt_tokens=sum(len(m.content.split()) for m in messages),
            prompt_tokens_per_s=0.0, generated_tokens=n,
            generation_tokens_per_s=n / elapsed if elapsed > 0 else 0.0,
            time_to_first_token_s=first or 0.0, reused_tokens=0, evaluated_prompt_tokens=0,
            stop_reason=reason,  # type: ignore[arg-type]
            total_seconds=elapsed,
        )
        yield Done(0, "".join(parts), stats)

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
