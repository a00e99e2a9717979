"""Delivering a reply's text from the worker: stop strings, and deltas in small batches.

Pure Python, so it is tested without a model. Stop strings hold back only a tail that may
begin one; deltas go out at once when tokens come slowly (and always the first), and are
gathered briefly when tokens come faster than the caller can use them one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tui.engine.protocol import ReasoningDelta, TextDelta, WorkerEvent
from tui.engine.reasoning import Part

Send = Callable[[WorkerEvent], None]


class StopMatcher:
    """Stop strings over streamed text: holds back a tail that may begin a stop string."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to show, whether a stop string was reached)."""
        buf = self.held + text
        hits = [at for at in (buf.find(s) for s in self.stops) if at >= 0]
        if hits:
            self.held = ""
            return buf[: min(hits)], True
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:n]):
                    keep = n
                    break
        self.held = buf[len(buf) - keep:]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


@dataclass
class _Pending:
    part: Part
    text: str
    n_tokens: int


class DeltaSender:
    """Deltas to the caller: at once when tokens come slowly (and always the first one);
    gathered for up to ``HOLD_S`` when they come faster than ``FAST_S`` apart.

    A caller that uses text less often than tokens come (the app draws a few times a second)
    asks for ``gather_s``: deltas are then gathered for up to that long while tokens come
    more than two per ``gather_s``, so it wakes once per batch instead of once per token."""

    FAST_S = 0.003
    HOLD_S = 0.010

    def __init__(self, send: Send, rid: int, gather_s: float = 0.0) -> None:
        self.send = send
        self.rid = rid
        self.hold_s = gather_s or self.HOLD_S
        self.fast_s = gather_s / 2 if gather_s else self.FAST_S
        self.pending: list[_Pending] = []
        self.sent_any = False
        self.last_add = 0.0
        self.held_since = 0.0

    def add(self, part: Part, text: str, n_tokens: int) -> None:
        now = time.perf_counter()
        if self.pending and self.pending[-1].part == part:
            self.pending[-1].text += text
            self.pending[-1].n_tokens += n_tokens
        else:
            if not self.pending:
                self.held_since = now
            self.pending.append(_Pending(part, text, n_tokens))
        fast = now - self.last_add < self.fast_s
        self.last_add = now
        if not self.sent_any or not fast or now - self.held_since >= self.hold_s:
            self.flush()

    def flush(self) -> None:
        for item in self.pending:
            kind = TextDelta if item.part == "answer" else ReasoningDelta
            self.send(kind(self.rid, item.text, item.n_tokens))
        self.pending.clear()
        self.sent_any = True
