"""Errors raised by the store. Every failure a user can cause or meet is a ``StoreError``."""

from __future__ import annotations

from tui.i18n import _


class StoreError(Exception):
    """Something could not be read or saved; the message is meant for the user."""


class UnreadableFile(StoreError):
    """A file is there but cannot be read (its permissions, a disk error): left as it is."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(_("cannot read {path} ({strerror})", path=path, strerror=reason))
        self.path = str(path)
        self.reason = reason


class StoreReadOnly(StoreError):
    """A write was attempted on a store opened read-only (another lmdesk holds the lock)."""


class NotFoundError(StoreError, KeyError):
    """No conversation or message with that id (also a ``KeyError``)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the plain message of StoreError.
        return str(self.args[0]) if self.args else _("not found")
