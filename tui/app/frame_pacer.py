"""How often the reply being streamed is drawn: as often as the UI can afford.

The model worker and the app share the machine's cores, so every millisecond the app spends
drawing is taken from generation. The pacer keeps the app process's CPU share (all of its
threads: drawing, the terminal writer, the reader, the monitor) under a budget by drawing less
often when a frame is expensive (a wide terminal, a long code block) and more often again when
it is cheap, between ``fastest_s`` and ``slowest_s`` apart. Whatever the token rate, the
frames per second are bounded by ``1 / fastest_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FASTEST_S = 0.04
SLOWEST_S = 0.5
BUDGET = 0.05
"""The app process's share of one core it may spend while a reply streams: at 70 tokens/s,
0.7 ms of CPU per token, the model's threads keep the cores."""
WINDOW_S = 0.5
"""How long a share is measured over before the interval changes."""


class FramePacer:
    def __init__(self, *, fastest_s: float = FASTEST_S, slowest_s: float = SLOWEST_S,
                 budget: float = BUDGET, clock: Callable[[], float] = time.perf_counter,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.fastest_s = fastest_s
        self.slowest_s = slowest_s
        self.budget = budget
        self.interval_s = fastest_s
        self._clock = clock
        self._cpu = cpu
        self._next = 0.0
        self._mark: tuple[float, float] | None = None

    def start(self) -> None:
        """A reply starts: from half the interval the last one settled on (a frame costs
        about the same from one reply to the next; a reply of a few seconds would be over
        before the pacer found its rate again from the fastest)."""
        self.interval_s = max(self.fastest_s, self.interval_s / 2)
        self._next = 0.0
        self._mark = (self._clock(), self._cpu())

    def due(self) -> bool:
        """Whether to draw now (call when ``wait_s`` has passed, or on every tick of a timer
        at ``fastest_s``)."""
        now = self._clock()
        if now < self._next:
            return False
        self._adjust(now)
        self._next = now + self.interval_s - self.fastest_s / 2
        return True

    def wait_s(self) -> float:
        """How long until the next frame is due."""
        return max(self.fastest_s / 4, self._next - self._clock())

    def _adjust(self, now: float) -> None:
        if self._mark is None:
            self._mark = (now, self._cpu())
            return
        wall = now - self._mark[0]
        if wall < WINDOW_S:
            return
        cpu = self._cpu()
        share = (cpu - self._mark[1]) / wall
        if share > self.budget:  # in proportion, so a reply of a few seconds settles too
            self.interval_s = min(self.slowest_s,
                                  self.interval_s * min(3.0, max(1.25, share / self.budget)))
        elif share < self.budget / 2:
            self.interval_s = max(self.fastest_s, self.interval_s / 1.25)
        self._mark = (now, cpu)
