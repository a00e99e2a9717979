"""Starting spawned processes from anywhere, a full-screen app included."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdio_with_file_descriptors() -> Iterator[None]:
    """multiprocessing hands ``sys.stderr.fileno()`` to its resource tracker; a full-screen app
    replaces sys.stderr with an object that has no descriptor, and the spawn then fails with
    "bad value(s) in fds_to_keep". Lend it /dev/null for the start."""
    saved = sys.stdout, sys.stderr
    devnull = None
    try:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            try:
                ok = stream is not None and stream.fileno() >= 0
            except (AttributeError, OSError, ValueError):
                ok = False
            if not ok:
                devnull = devnull or open(os.devnull, "w")  # noqa: SIM115
                setattr(sys, name, devnull)
        yield
    finally:
        sys.stdout, sys.stderr = saved
        if devnull is not None:
            devnull.close()
