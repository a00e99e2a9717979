"""Sharing the cores between models that generate at once (the compare view, serve beside the
app): each worker that is generating holds a lock on a file of its own in a shared folder,
counts the held locks, and runs on its share of its threads, so two models split the cores
instead of both spinning on all of them (llama.cpp's threads busy-wait).

The count is read when a reply starts and again every few dozen tokens, so a reply that
started alone gives up half its threads when another starts, and takes them back after.
Locks are ``fcntl.flock`` locks: a crashed worker's lock goes with its process. Where flock
is missing (Windows), every worker counts only itself.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".generating"


class CoreShare:
    """One worker's place among the workers generating on this machine."""

    def __init__(self, folder: Path, name: str | None = None) -> None:
        self.folder = folder
        self.path = folder / f"{name or os.getpid()}{SUFFIX}"
        self._held: IO[bytes] | None = None

    def begin(self) -> None:
        """This worker starts generating."""
        if fcntl is None or self._held is not None:
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = self.path.open("ab")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        self._held = handle

    def end(self) -> None:
        handle, self._held = self._held, None
        if handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def active(self) -> int:
        """How many workers are generating now, this one included (at least 1)."""
        if fcntl is None:
            return 1
        count = 0
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path == self.path:
                count += self._held is not None
                continue
            try:
                with path.open("rb") as probe:
                    try:
                        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    except BlockingIOError:
                        count += 1  # held: that worker is generating
                        continue
                    fcntl.flock(probe, fcntl.LOCK_UN)
            except OSError:
                continue
        return max(count, 1)


def share_of(threads: int, active: int) -> int:
    """The threads one of ``active`` generating workers runs on (at least 1)."""
    return max(1, threads // max(active, 1))
