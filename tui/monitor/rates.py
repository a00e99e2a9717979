"""Token rates: live tokens/s while a reply streams, recent replies' rates, ttft, context fill.

Feed it from the engine's events: ``start()`` when the request goes out, ``delta()`` per
``TextDelta``, ``finish()`` with the ``Done`` stats. Every method takes an optional ``now``
(``time.monotonic()`` seconds) so tests and replays can drive the clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tui.engine.protocol import GenerationStats

SPARK_CHARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class ReplyRate:
    """One finished reply."""

    generated_tokens: int
    tokens_per_s: float
    prompt_tokens: int
    prompt_tokens_per_s: float
    ttft_s: float


@dataclass(frozen=True)
class RateSnapshot:
    streaming: bool
    live_tokens_per_s: float
    """While streaming: over the last ``window_s``; after: the last reply's rate."""
    generated_tokens: int
    ttft_s: float | None
    prompt_tokens_per_s: float | None
    context_tokens: int
    n_ctx: int
    history: tuple[float, ...]
    """Generation tokens/s of recent replies, oldest first (for a sparkline)."""

    @property
    def context_fill(self) -> float:
        return min(1.0, self.context_tokens / self.n_ctx) if self.n_ctx else 0.0


class RateTracker:
    """Thread-safe: the engine thread feeds it, the UI timer reads ``snapshot()``."""

    def __init__(
        self,
        *,
        history: int = 32,
        window_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._window = window_s
        self._lock = threading.Lock()
        self._history: deque[ReplyRate] = deque(maxlen=history)
        self._points: deque[tuple[float, int]] = deque()  # (time, cumulative tokens)
        self._start: float | None = None
        self._first: float | None = None
        self._first_n = 0
        self._generated = 0
        self._streaming = False
        self._prompt_tokens = 0
        self._context_before = 0
        self._context_tokens = 0
        self._n_ctx = 0

    # --- context ---------------------------------------------------------------------------

    def set_context(self, tokens: int, n_ctx: int | None = None) -> None:
        """Tokens now in the context window (and its size, when it changes)."""
        with self._lock:
            self._context_tokens = max(0, tokens)
            if n_ctx is not None:
                self._n_ctx = max(0, n_ctx)

    # --- one reply -------------------------------------------------------------------------

    def start(self, prompt_tokens: int = 0, now: float | None = None) -> None:
        """A request went out with ``prompt_tokens`` in its prompt (0 when not yet known)."""
        t = self._clock() if now is None else now
        with self._lock:
            self._start = t
            self._first = None
            self._first_n = 0
            self._generated = 0
            self._points.clear()
            self._streaming = True
            self._prompt_tokens = prompt_tokens
            if prompt_tokens:
                self._context_tokens = prompt_tokens
            self._context_before = self._context_tokens

    def delta(self, n_tokens: int = 1, now: float | None = None) -> None:
        t = self._clock() if now is None else now
        with self._lock:
            if not self._streaming:
                return
            if self._first is None:
                self._first = t
                self._first_n = n_tokens
            self._generated += n_tokens
            self._context_tokens = self._context_before + self._generated
            self._points.append((t, self._generated))
            # keep one point older than the window as the reference
            while len(self._points) > 2 and self._points[1][0] <= t - self._window:
                self._points.popleft()

    def finish(self, stats: GenerationStats | None = None, now: float | None = None) -> ReplyRate:
        """The reply ended. llama.cpp's own figures in ``stats`` win over the timestamps."""
        t = self._clock() if now is None else now
        with self._lock:
            self._streaming = False
            ttft = self._ttft() or 0.0
            measured = self._overall_rate(t)
            if stats is not None:
                rate = ReplyRate(
                    generated_tokens=stats.generated_tokens,
                    tokens_per_s=stats.generation_tokens_per_s or measured,
                    prompt_tokens=stats.prompt_tokens,
                    prompt_tokens_per_s=stats.prompt_tokens_per_s,
                    ttft_s=stats.time_to_first_token_s or ttft,
                )
                self._context_tokens = stats.prompt_tokens + stats.generated_tokens
            else:
                prompt_tps = self._prompt_tokens / ttft if ttft > 0 and self._prompt_tokens else 0.0
                rate = ReplyRate(self._generated, measured, self._prompt_tokens, prompt_tps, ttft)
            self._history.append(rate)
            return rate

    # --- reading ---------------------------------------------------------------------------

    def _overall_rate(self, now: float) -> float:
        """Tokens after the first delta over the time since it (the first carries the ttft)."""
        if self._first is None or not self._points:
            return 0.0
        span = self._points[-1][0] - self._first
        return (self._generated - self._first_n) / span if span > 0 else 0.0

    def _ttft(self) -> float | None:
        if self._first is None or self._start is None:
            return None
        return self._first - self._start

    def _live_rate(self, now: float) -> float:
        if len(self._points) < 2:
            return 0.0
        ref_t, ref_n = self._points[0]
        for t, n in self._points:
            if t <= now - self._window:
                ref_t, ref_n = t, n
        last_n = self._points[-1][1]
        span = max(now, self._points[-1][0]) - ref_t
        return (last_n - ref_n) / span if span > 0 else 0.0

    def snapshot(self, now: float | None = None) -> RateSnapshot:
        t = self._clock() if now is None else now
        with self._lock:
            last = self._history[-1] if self._history else None
            if self._streaming:
                live = self._live_rate(t)
                ttft = self._ttft()
                prompt_tps = (
                    self._prompt_tokens / ttft if ttft and self._prompt_tokens else None
                )
                generated = self._generated
            else:
                live = last.tokens_per_s if last else 0.0
                ttft = last.ttft_s if last else None
                prompt_tps = last.prompt_tokens_per_s if last else None
                generated = last.generated_tokens if last else 0
            return RateSnapshot(
                streaming=self._streaming,
                live_tokens_per_s=live,
                generated_tokens=generated,
                ttft_s=ttft,
                prompt_tokens_per_s=prompt_tps,
                context_tokens=self._context_tokens,
                n_ctx=self._n_ctx,
                history=tuple(r.tokens_per_s for r in self._history),
            )

    @property
    def history(self) -> tuple[ReplyRate, ...]:
        with self._lock:
            return tuple(self._history)


def sparkline(values: Iterable[float], width: int | None = None) -> str:
    """``▁▃▇``-style bars scaled to the largest value; the last ``width`` values."""
    vals = [max(0.0, v) for v in values]
    if width is not None:
        vals = vals[-width:] if width > 0 else []
    top = max(vals, default=0.0)
    if top <= 0:
        return SPARK_CHARS[0] * len(vals)
    steps = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round(v / top * steps)] for v in vals)
