"""``index.json``: the list of conversations, a cache of what their files say.

Each row holds a conversation's metadata and counters and the signature of the file it was
taken from. The files are the truth (see ``conversation_file``): at open, one ``stat`` per
conversation finds the rows whose file changed since (a crash before the counters were
written, a file restored from its backup) and re-reads those files; a file with no row (the
index restored from an older copy, lost, or deleted) is listed again from its own metadata;
a row whose file is gone is dropped. A lost index costs one read of every conversation file
and one line telling the user, never a conversation.

Counters (``message_count``, ``updated``) change with every message; they are kept in memory
(``pending``) and written with the next index change or at ``flush``, so appending a message
writes only that conversation's file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tui.i18n import _, n_

from . import schema
from .conversation_file import ConversationFile, index_row
from .errors import NotFoundError, UnreadableFile
from .models import ConversationMeta, meta_from_row
from .storage import AtomicJSONStorage, signature

INDEX_NAME = "index.json"
CONV_DIR = "conversations"
CONV_TABLE = "conversations"
ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Row = dict[str, Any]
FileLookup = Callable[[str], ConversationFile | None]
"""The conversation files the store has open (None: read it afresh)."""


class ConversationIndex:
    """The rows of ``index.json`` and what is pending for them (the store holds the mutex)."""

    def __init__(self, data_dir: Path, notices: list[str], open_file: FileLookup) -> None:
        self.data_dir = data_dir
        self.notices = notices
        self.storage = AtomicJSONStorage(data_dir / INDEX_NAME, notices=notices)
        self.read_only = False
        self.reason = ""
        self._open_file = open_file
        self._pending: dict[str, Row] = {}
        self._found: dict[str, Row] = {}
        """Read-only: conversations whose files are not in the index, listed from the files."""
        self._derived: dict[str, tuple[Any, Row]] = {}
        """Read-only: rows re-read from files that changed since the index was written."""
        self.unreadable: set[str] = set()
        """Conversations whose file could not be read at open (the user was told once)."""
        self._rows_src: object = None
        self._rows_map: dict[str, Row] = {}

    @property
    def conv_dir(self) -> Path:
        return self.data_dir / CONV_DIR

    def conv_path(self, cid: str) -> Path:
        return self.conv_dir / f"{cid}.json"

    def existed(self) -> bool:
        path = self.storage.path
        return path.exists() or self.storage.backup_path.exists()

    def set_read_only(self, reason: str) -> None:
        self.read_only = True
        self.reason = reason
        self.storage.read_only = True
        self.storage.read_only_reason = reason

    # -- reading -------------------------------------------------------------------------------

    def rows(self) -> dict[str, Row]:
        """cid -> row, as the index has them (and, read-only, those found in files)."""
        data = self.storage.read() or {}
        raw = data.get(CONV_TABLE, {})
        if raw is not self._rows_src:
            self._rows_map = {doc["id"]: doc for doc in raw.values()
                              if isinstance(doc.get("id"), str)}
            self._rows_src = raw
        if not self._found:
            return self._rows_map
        found = {cid: row for cid, row in self._found.items()
                 if cid not in self._rows_map and self.conv_path(cid).exists()}
        return {**found, **self._rows_map}

    def row(self, cid: str) -> Row:
        if not isinstance(cid, str) or not ID_OK.match(cid):
            raise NotFoundError(_("no conversation {cid!r}", cid=cid))
        row = self.rows().get(cid)
        if row is None:
            raise NotFoundError(_("no conversation {cid!r}", cid=cid))
        return row

    def meta(self, cid: str, row: Row | None = None) -> ConversationMeta:
        row = row if row is not None else self.row(cid)
        pending = self._pending.get(cid)
        if pending is not None:
            row = {**row, **pending}
        elif self.read_only:
            row = self._fresh_row(cid, row) or row
        return meta_from_row(row)

    def metas(self) -> list[ConversationMeta]:
        return [self.meta(cid, row) for cid, row in self.rows().items()]

    # -- rows from files -------------------------------------------------------------------------

    def row_from_file(self, cid: str, known: Row | None = None) -> Row | None:
        """The row a conversation's file gives (None: no such file)."""
        file = self._open_file(cid) or ConversationFile(
            self.conv_path(cid), read_only=self.read_only, read_only_reason=self.reason,
            notices=self.notices)
        if not file.exists():
            return None
        data = file.data()
        try:
            mtime = os.stat(file.path).st_mtime
        except OSError:
            mtime = 0.0
        row = index_row(cid, data, known=known, mtime=mtime)
        sig = file.signature
        row["sig"] = list(sig) if sig else None
        return row

    def _fresh_row(self, cid: str, row: Row) -> Row | None:
        """The row re-read from the file when the file changed since ``row`` was written."""
        path = self.conv_path(cid)
        try:
            sig: list[int] | None = list(signature(os.stat(path)))
        except OSError:
            sig = None
        if sig == row.get("sig") and not (
                sig is None and path.with_name(path.name + ".bak").exists()):
            return None
        if self.read_only:
            cached = self._derived.get(cid)
            if cached is not None and cached[0] == sig:
                return cached[1]
        try:
            fresh = self.row_from_file(cid, row)
        except UnreadableFile as exc:  # listed as the index has it; opening it says why not
            self._tell_unreadable(cid, exc, _("it is listed as it was"))
            return None
        if self.read_only and fresh is not None:
            self._derived[cid] = (sig, fresh)
        return fresh

    def ids_on_disk(self) -> set[str]:
        found: set[str] = set()
        try:
            names = os.listdir(self.conv_dir)
        except OSError:
            return found
        for name in names:
            stem = name.removesuffix(".bak").removesuffix(".json")
            if name.endswith((".json", ".json.bak")) and ID_OK.match(stem):
                found.add(stem)
        return found

    # -- writing -------------------------------------------------------------------------------

    def pending(self, cid: str, fields: Row) -> None:
        """Remember new counters for a row; written with the next index write."""
        self._pending.setdefault(cid, {}).update(fields)

    def pending_fields(self, cid: str) -> Row:
        return self._pending.get(cid, {})

    def save(self, changes: dict[str, Row] | None = None, *, drop: Iterable[str] = (),
             add: dict[str, Row] | None = None) -> None:
        """One write of the index: ``changes`` to rows, rows dropped and added, and every
        pending counter."""
        merged = {cid: dict(fields) for cid, fields in self._pending.items()}
        for cid, fields in (changes or {}).items():
            merged.setdefault(cid, {}).update(fields)
        gone = set(drop)
        data = self.storage.read()
        if data is None:
            data = {}
            schema.set_version(data, schema.current_version())
        old = data.get(CONV_TABLE, {})
        ids = {doc.get("id") for doc in old.values()}
        if not merged.keys() & ids and not gone & ids and not add:
            self._pending.clear()
            return
        table: dict[str, Row] = {}
        for key, doc in old.items():
            cid = doc.get("id")
            if cid in gone:
                continue
            table[key] = {**doc, **merged[cid]} if cid in merged else doc
        next_key = max((int(k) for k in table), default=0) + 1
        for n, row in enumerate((add or {}).values()):
            table[str(next_key + n)] = row
        self.storage.write({**data, CONV_TABLE: table})
        self._pending.clear()

    def flush(self) -> None:
        if self._pending and not self.read_only:
            self.save()

    # -- at open ---------------------------------------------------------------------------------

    def reconcile(self, *, existed: bool) -> None:
        """Bring the rows in step with the files (see the module's doc), and tell the user in
        one line when the index itself was lost and listed again from the files."""
        rows = self.rows()
        on_disk = self.ids_on_disk()
        changes: dict[str, Row] = {}
        drop = []
        for cid, row in rows.items():
            if cid not in on_disk:
                if not self.read_only:
                    drop.append(cid)
                continue
            if not self.read_only:
                fresh = self._fresh_row(cid, row)
                if fresh is not None:
                    changes[cid] = fresh
        found: dict[str, Row] = {}
        for cid in sorted(on_disk - rows.keys()):
            try:
                listed = self.row_from_file(cid)
            except UnreadableFile as exc:
                self._tell_unreadable(cid, exc, _("it is not listed until it can be read"))
                continue
            if listed is not None:
                found[cid] = listed
        if self.read_only:
            self._found = found
        elif changes or drop or found:
            self.save(changes, drop=drop, add=found)
        self._tell(existed, len(found))

    def _tell_unreadable(self, cid: str, exc: UnreadableFile, listing: str) -> None:
        self.unreadable.add(cid)
        line = _("{path} cannot be read ({reason}): {listing}, left as it is, and the other "
                 "conversations open as usual.", path=exc.path, reason=exc.reason,
                 listing=listing)
        if line not in self.notices:
            self.notices.append(line)

    def _tell(self, existed: bool, found: int) -> None:
        recovery = self.storage.recovery
        path = self.storage.path
        if found == 0:
            return
        listed = n_("{count} conversation", "{count} conversations", found)
        if recovery is None:
            if not existed and self.read_only:
                self.notices.append(n_(
                    "{path} is missing; {count} conversation is listed from its file.",
                    "{path} is missing; {count} conversations are listed from their files.",
                    found, path=path))
            elif not existed:
                self.notices.append(_("{path} was missing; the list of {listed} was rebuilt "
                                      "from their files.", path=path, listed=listed))
            return
        if recovery.notice in self.notices:
            self.notices.remove(recovery.notice)
        if self.read_only:
            line = n_("{path} could not be read ({reason}); {count} conversation is listed from "
                      "its file. It is left as it is because this lmdesk is read-only.",
                      "{path} could not be read ({reason}); {count} conversations are listed from "
                      "their files. It is left as it is because this lmdesk is read-only.",
                      found, path=path, reason=recovery.reason)
        elif recovery.restored:
            line = n_("{notice} {count} conversation missing from that copy was listed again "
                      "from its file.",
                      "{notice} {count} conversations missing from that copy were listed again "
                      "from their files.", found, notice=recovery.notice)
        else:
            aside = [name for name in (recovery.aside, recovery.backup_aside) if name]
            kept = _(" (set aside as {names})", names=", ".join(aside)) if aside else ""
            backup = _("its backup neither") if recovery.backup_aside else _("there was no backup")
            line = (_("{path} could not be read ({reason}) and {backup}{kept}; the list of "
                      "{listed} was rebuilt from their files. Nothing was deleted.",
                      path=path, reason=recovery.reason, backup=backup, kept=kept, listed=listed))
        self.notices.append(line)
