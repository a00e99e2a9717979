"""Named tables (memory, templates, personas, model profiles, settings...): a file each.

``tables/<name>.json`` is a TinyDB database holding the one table ``name``, written atomically
with its own backup like every store file. Kept apart from the index and from each other, a
damaged file costs only that table's last change (its backup is restored) and never hides the
others or the conversations.

A read-only instance looking at a folder not yet upgraded (another, older lmdesk holds it)
reads the tables where that version kept them, inside the index (``legacy``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Table

from .errors import StoreReadOnly
from .storage import AtomicJSONStorage

TABLES_DIR = "tables"
_PLAIN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def file_name(name: str) -> str:
    """The file of table ``name``: the name itself when it is file-name safe."""
    if _PLAIN.match(name):
        return f"{name}.json"
    return f"t-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:20]}.json"


class _FrozenMemory(MemoryStorage):
    """An index's tables, shown read-only."""

    def __init__(self, data: dict[str, dict[str, Any]], reason: str) -> None:
        self.memory: dict[str, dict[str, Any]] | None = data
        self.reason = reason

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raise StoreReadOnly(self.reason)


class TableFiles:
    """Opens each named table's file on first use (the caller holds the store's mutex)."""

    def __init__(self, folder: Path, *, read_only: bool, read_only_reason: str,
                 notices: list[str], legacy: dict[str, dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.read_only = read_only
        self.reason = read_only_reason
        self.notices = notices
        self._legacy = legacy
        self._dbs: dict[str, TinyDB] = {}

    def table(self, name: str) -> Table:
        db = self._dbs.get(name)
        if db is None:
            if self._legacy is not None:
                db = TinyDB(storage=_FrozenMemory, data=self._legacy, reason=self.reason)
            else:
                db = TinyDB(self.folder / file_name(name), storage=AtomicJSONStorage,
                            read_only=self.read_only, read_only_reason=self.reason,
                            notices=self.notices)
            self._dbs[name] = db
        return db.table(name, cache_size=0 if self.read_only else 10)

    def read_all(self) -> None:
        """Read every table file now, so a damaged one is found (and told) at open."""
        if self._legacy is not None:
            return
        try:
            names = {p.name.removesuffix(".bak") for p in self.folder.iterdir()
                     if p.name.endswith((".json", ".json.bak")) and not p.name.startswith(".")}
        except OSError:
            return
        paths = [self.folder / name for name in sorted(names)]
        for path in paths:
            storage = AtomicJSONStorage(path, read_only=self.read_only,
                                        read_only_reason=self.reason, notices=self.notices)
            storage.read()

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
