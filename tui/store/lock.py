"""One writer per data folder: an exclusive ``flock`` on ``<data>/lmdesk.lock``.

The lock is held for the store's whole life and released by the kernel if the process dies,
so a crash never leaves a stale lock. The file holds the owner's pid, for the message a
second instance shows. Its descriptor is close-on-exec: engine workers do not inherit it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tui.i18n import _

LOCK_NAME = "lmdesk.lock"


class DataLock:
    """An acquired lock; ``release()`` (idempotent) gives it up."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def acquire(data_dir: Path) -> tuple[DataLock | None, str, bool]:
    """Try to take the folder's lock without waiting.

    Returns the lock, "" and False; or None, why not ("another lmdesk is running (pid N)")
    and whether that is because another lmdesk holds it (the text is in the user's language).
    """
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        return None, _("the lock file {path} cannot be created ({strerror})",
                       path=path, strerror=exc.strerror), False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = _holder_pid(fd)
        os.close(fd)
        who = f"pid {pid}" if pid is not None else _("pid unknown")
        return None, _("another lmdesk is running ({who})", who=who), True
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass  # the pid is only informative
    return DataLock(fd, path), "", False
