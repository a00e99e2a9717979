"""The one TinyDB storage lmdesk uses: JSON files written atomically, with a backup.

A write goes to a temp file in the same folder, which is fsynced and then renamed over the
real file with ``os.replace``; the folder is fsynced last. Before the rename, the current file
(if it parsed) is hard-linked as ``<name>.bak``, so the last good copy costs no copying.

A file that fails to parse is renamed to ``<name>.corrupt-<UTC time>`` (never deleted), the
backup restored in its place, and a line added to ``notices`` for the user. Reads are cached
and validated against the file's inode, size and mtime, so a read is one ``fstat`` unless the
file changed (a read-only instance sees the writer's changes).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from tui.i18n import _

from .errors import StoreError, StoreReadOnly, UnreadableFile

TMP_MARK = ".tmp-"
"""Temp files are ``.<name>.tmp-<pid>-<n>``; leftovers from a crash are removed at open."""
CORRUPT_MARK = ".corrupt-"

Signature = tuple[int, int, int]
"""(inode, size, mtime_ns) of a file: changes whenever the file is replaced."""

_counter = itertools.count()


def signature(st: os.stat_result) -> Signature:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_error(path: Path, exc: OSError) -> StoreError:
    """A StoreError for a failed write; a full disk says so first."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return StoreError(_("disk full: could not save {path} ({reason}); nothing was changed",
                            path=path, reason=reason))
    return StoreError(_("could not save {path} ({reason}); nothing was changed",
                        path=path, reason=reason))


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temp files left by a crashed writer (only the lock holder may call this)."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and TMP_MARK in entry.name and entry.is_file():
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


@dataclass(frozen=True)
class Recovery:
    """What the storage did about a file it could not read (the last time it had to)."""

    reason: str
    aside: str | None
    """The damaged file's new name (None: it was missing, or left alone read-only)."""
    backup_aside: str | None
    """The backup's new name when it was damaged too."""
    restored: bool
    """The backup was good and took the file's place."""
    notice: str
    """The line added to ``notices``."""


class Damaged(Exception):
    """The bytes of a file are not a TinyDB database."""


def parse(payload: bytes) -> dict[str, dict[str, Any]]:
    """Parse and check a TinyDB JSON file: {table: {"<int id>": {document}}}."""
    if not payload.strip():
        raise Damaged(_("the file is empty"))
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Damaged(_("not valid JSON: {exc}", exc=exc)) from exc
    if not isinstance(data, dict):
        raise Damaged(_("not a database (top level is not an object)"))
    for name, table in data.items():
        if not isinstance(table, dict):
            raise Damaged(_("table {name!r} is not an object", name=name))
        for key, doc in table.items():
            if not key.isdigit() or not isinstance(doc, dict):
                raise Damaged(_("table {name!r} has a bad document {key!r}", name=name, key=key))
    return data


def dumps(data: Any) -> bytes:
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8 encoded; escaped JSON round-trips them.
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class AtomicJSONStorage(Storage):
    """TinyDB storage: atomic writes, ``.bak`` of the last good copy, damaged files set aside.

    ``notices`` is shared with the Store: human-readable lines about recoveries.
    ``durable=False`` skips the fsyncs (only for building benchmark data sets).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        read_only_reason: str = "",
        notices: list[str] | None = None,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.read_only_reason = read_only_reason
        self.notices: list[str] = notices if notices is not None else []
        self.durable = durable
        self._cache: tuple[Signature, dict[str, dict[str, Any]]] | None = None
        self._good: Signature | None = None
        """Signature of the file on disk last known to parse (only that one becomes the .bak)."""
        self.recovery: Recovery | None = None
        self._backup_aside: str | None = None

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    @property
    def cached_signature(self) -> Signature | None:
        """Signature of the file as last read or written by this storage."""
        return self._cache[0] if self._cache is not None else None

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            self._cache = None
            self._good = None
            if os.path.exists(self.backup_path):
                # Only a failed restore (or a person) leaves a backup without its file.
                return self._recover(None, _("the file is missing"))
            return None
        except OSError as exc:
            raise UnreadableFile(self.path, exc.strerror or str(exc)) from exc
        try:
            st = os.fstat(fd)
            sig = signature(st)
            if self._cache is not None and self._cache[0] == sig:
                return self._cache[1]
            with os.fdopen(os.dup(fd), "rb") as fh:
                payload = fh.read()
        except OSError as exc:
            raise UnreadableFile(self.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)
        try:
            data = parse(payload)
        except Damaged as exc:
            return self._recover(sig, str(exc))
        self._cache = (sig, data)
        self._good = sig
        return data

    def _read_backup(self) -> dict[str, dict[str, Any]] | None:
        try:
            return parse(self.backup_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, Damaged):
            if not self.read_only:
                self._backup_aside = self._set_aside(self.backup_path).name
            return None

    def _set_aside(self, path: Path) -> Path:
        stamp = utc_stamp()
        target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}-{n}")
            n += 1
        os.rename(path, target)
        if self.durable:
            fsync_dir(path.parent)
        return target

    def _recover(self, sig: Signature | None, reason: str) -> dict[str, dict[str, Any]] | None:
        """Set the unreadable file aside and put the backup in its place, telling the user."""
        self._backup_aside = None
        backup = self._read_backup()
        if self.read_only:
            what = _("showing its last good copy") if backup is not None else _("showing nothing")
            notice = (
                _("{path} could not be read ({reason}); {what}. It is left as it is because "
                  "this lmdesk is read-only.", path=self.path, reason=reason, what=what)
            )
            if sig is not None:
                self._cache = (sig, backup if backup is not None else {})
            if notice not in self.notices:
                self.notices.append(notice)
            self.recovery = Recovery(reason, None, None, backup is not None, notice)
            return backup
        self._cache = None
        self._good = None
        aside_note = ""
        aside_name: str | None = None
        if sig is not None:
            try:
                aside = self._set_aside(self.path)
            except OSError as exc:
                raise StoreError(
                    _("{path} could not be read ({reason}) and could not be set aside "
                      "({strerror})", path=self.path, reason=reason, strerror=exc.strerror)
                ) from exc
            aside_name = aside.name
            aside_note = _(" It was set aside as {aside_name}.", aside_name=aside_name)
        if backup is None:
            notice = (_("{path} could not be read ({reason}).{aside_note} There was no usable "
                        "backup, so it starts empty.",
                        path=self.path, reason=reason, aside_note=aside_note))
            self.notices.append(notice)
            self.recovery = Recovery(reason, aside_name, self._backup_aside, False, notice)
            return None
        self._write_payload(dumps(backup), backup, keep_backup=False)
        notice = (_("{path} could not be read ({reason}).{aside_note} The last good copy was "
                    "restored; the most recent change may be missing.",
                    path=self.path, reason=reason, aside_note=aside_note))
        self.notices.append(notice)
        self.recovery = Recovery(reason, aside_name, None, True, notice)
        return backup

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if self.read_only:
            self._cache = None  # TinyDB changed the cached dict in place before calling us
            raise StoreReadOnly(self.read_only_reason or _("{path} is open read-only",
                                                           path=self.path))
        try:
            payload = dumps(data)
        except (TypeError, ValueError) as exc:
            self._cache = None
            raise StoreError(_("cannot save {name}: {exc}", name=self.path.name, exc=exc)) from exc
        self._write_payload(payload, data, keep_backup=True)

    def _temp_path(self, what: str) -> Path:
        return self.path.with_name(
            f".{self.path.name}{what}{TMP_MARK}{os.getpid()}-{next(_counter)}"
        )

    def _write_payload(
        self, payload: bytes, data: dict[str, dict[str, Any]], *, keep_backup: bool
    ) -> None:
        tmp = self._temp_path("")
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                0o600,
            )
            try:
                _write_all(fd, payload)
                if self.durable:
                    os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if keep_backup:
                self._refresh_backup()
            os.replace(tmp, self.path)
        except BaseException as exc:
            self._cache = None
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise save_error(self.path, exc) from exc
            raise
        sig = signature(st)
        self._cache = (sig, data)
        self._good = sig
        if self.durable:
            try:
                fsync_dir(self.path.parent)
            except OSError as exc:
                raise save_error(self.path.parent, exc) from exc

    def _refresh_backup(self) -> None:
        """Make the current file (if known good) the backup: a hard link, no copy."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if self._good is None or signature(st) != self._good:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.backup_path).st_ino == st.st_ino:
                # Already the backup (a writer died between the two renames); renaming a
                # hard link onto itself would do nothing and leave the temp link behind.
                return
        link = self._temp_path(".bak")
        try:
            os.link(self.path, link)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            # No hard links on this file system: copy instead.
            shutil.copyfile(self.path, link)
            os.chmod(link, 0o600)
        try:
            os.replace(link, self.backup_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(link)
            raise

    def write_raw(self, data: dict[str, dict[str, Any]]) -> None:
        """Write without making a backup (a brand-new file, e.g. an import or a benchmark)."""
        if self.read_only:
            raise StoreReadOnly(self.read_only_reason or _("{path} is open read-only",
                                                           path=self.path))
        try:
            payload = dumps(data)
        except (TypeError, ValueError) as exc:
            raise StoreError(_("cannot save {name}: {exc}", name=self.path.name, exc=exc)) from exc
        self._write_payload(payload, data, keep_backup=False)

    def close(self) -> None:
        self._cache = None
