"""Keep the garbage collector's full passes off the hot path.

A long streamed reply leaves a large heap (cached render strips, widgets); CPython's full
collections scan all of it and cost 100-300 ms each on a small machine, more as the heap grows,
so they land as stalls in the middle of a reply. The app instead:

- ``hold()``: at the start of a reply and at each frozen segment, collects the young
  generations (cheap) and moves what survives out of the collector's sight (``gc.freeze``),
  so automatic passes only scan what is new;
- ``settle()``: when idle (shortly after a reply ends, after opening a conversation, after the
  first frame), brings everything back, collects once, and holds the survivors again;
- ``release()``: on exit, leaves the process as it found it.

Garbage made while objects are held is collected at the next ``settle()``.
"""

from __future__ import annotations

import gc


def hold() -> None:
    gc.collect(1)  # young garbage (a streamed reply makes plenty) dies now, not held
    gc.freeze()


def settle() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def release() -> None:
    gc.unfreeze()
