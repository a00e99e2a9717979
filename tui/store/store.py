"""The Store: conversations, messages, settings and named tables in one private data folder.

Layout of the folder (0700, files 0600)::

    lmdesk.lock                 flock held by the one writer
    index.json                  TinyDB: meta (schema), conversations (metadata), settings, ...
    conversations/<id>.json     TinyDB: the messages of one conversation
    *.bak, *.corrupt-<time>     last good copies, damaged files set aside

Appending a message rewrites only that conversation's file. The conversation's
``message_count`` and ``updated`` in the index are refreshed lazily: kept in memory, written
with the next index change or at ``close()``. Each index row records the signature of the
conversation file it describes, so after a crash the stale rows are found with one ``stat``
per conversation at open and re-derived from their files.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, cast

from tinydb import TinyDB, where
from tinydb.table import Table

from tui.config import ensure_private_dir

from . import schema
from .errors import NotFoundError, StoreError, StoreReadOnly
from .lock import DataLock, acquire
from .models import ConversationMeta, StoredMessage, meta_from_row, new_id, sort_key
from .options import ConversationOptions, options_to_doc
from .storage import AtomicJSONStorage, remove_stale_temp_files, signature
from .store_ops import MSG_TABLE, StoreOps, locked

INDEX_NAME = "index.json"
CONV_DIR = "conversations"
CONV_TABLE = "conversations"
SETTINGS_TABLE = "settings"
RESERVED_TABLES = frozenset({schema.META_TABLE, CONV_TABLE})
LAST_OPENED_KEY = "store.last_conversation"
OPEN_CONVERSATIONS = 8
"""Conversation databases kept parsed in memory (least recently used dropped)."""
_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Store(StoreOps):
    """Open with ``Store.open(data_dir)``; use as a context manager or call ``close()``."""

    read_only: bool
    notices: list[str]
    """Lines to show the user: read-only mode, recovered or set-aside files. May grow later
    (a damaged conversation file is noticed when it is first read)."""
    data_dir: Path

    def __init__(self, data_dir: Path, *, lock: DataLock | None) -> None:
        """Use ``Store.open``."""
        self.data_dir = data_dir
        self.read_only = False
        self.notices = []
        self._reason = ""
        self._lock = lock
        self._mutex = threading.RLock()
        self._closed = False
        self._index = TinyDB(data_dir / INDEX_NAME, storage=AtomicJSONStorage,
                             notices=self.notices)
        self._convs: OrderedDict[str, TinyDB] = OrderedDict()
        self._live: dict[str, dict[str, Any]] = {}
        self._rows_src: object = None
        self._rows_map: dict[str, tuple[int, dict[str, Any]]] = {}
        self._derived: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._last_opened: tuple[str, float] | None = None
        self._last_opened_dirty = False

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, *, read_only: bool = False) -> Store:
        """Open the folder; take its lock, or open read-only (see ``notices``) if it is held."""
        data_dir = Path(data_dir).expanduser()
        lock: DataLock | None = None
        cause = "it was opened read-only on purpose"
        if not read_only:
            try:
                ensure_private_dir(data_dir)
                ensure_private_dir(data_dir / CONV_DIR)
            except OSError as exc:
                cause = f"the data folder {data_dir} cannot be created ({exc.strerror})"
            else:
                lock, cause = acquire(data_dir)
        store = cls(data_dir, lock=lock)
        try:
            if lock is None:
                store._make_read_only(cause, tell=not read_only)
            else:
                remove_stale_temp_files(data_dir)
                remove_stale_temp_files(data_dir / CONV_DIR)
            newer = schema.prepare(store._index_storage, data_dir, store.notices)
            if newer:
                store._make_read_only(newer, tell=True)
            if not store.read_only:
                store._reconcile()
            setting = store._settings().get(where("key") == LAST_OPENED_KEY)
            value = setting.get("value") if isinstance(setting, dict) else None
            if isinstance(value, list) and len(value) == 2:
                store._last_opened = (str(value[0]), float(value[1]))
        except BaseException:
            store._release()
            raise
        return store

    def _make_read_only(self, cause: str, *, tell: bool) -> None:
        self.read_only = True
        self._reason = f"cannot save: this lmdesk is read-only because {cause}"
        if tell:
            until = (
                "you close the other one and restart lmdesk"
                if cause.startswith("another lmdesk")
                else "the problem is fixed and lmdesk restarted"
            )
            self.notices.append(
                f"{cause}; opened read-only: changes will not be saved until {until}."
            )
        self._index_storage.read_only = True
        self._index_storage.read_only_reason = self._reason
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @locked
    def flush(self) -> None:
        """Write pending conversation counters and the last-opened conversation to the index."""
        if self.read_only:
            return
        self._write_rows({})
        if self._last_opened_dirty and self._last_opened is not None:
            cid, at = self._last_opened
            self._settings().upsert({"key": LAST_OPENED_KEY, "value": [cid, at]},
                                    where("key") == LAST_OPENED_KEY)
            self._last_opened_dirty = False

    def close(self) -> None:
        """Save what is pending and release the lock. Safe to call twice."""
        with self._mutex:
            if self._closed:
                return
            try:
                if not self.read_only:
                    self.flush()
            finally:
                self._closed = True
                for db in self._convs.values():
                    db.close()
                self._convs.clear()
                self._index.close()
                self._release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    @property
    def _index_storage(self) -> AtomicJSONStorage:
        return cast(AtomicJSONStorage, self._index.storage)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreReadOnly(self._reason)

    def _conv_table(self) -> Table:
        return self._index.table(CONV_TABLE, cache_size=0)

    def _settings(self) -> Table:
        return self._index.table(SETTINGS_TABLE, cache_size=0)

    def _named_table(self, name: str) -> Table:
        if not isinstance(name, str) or not name or name in RESERVED_TABLES:
            raise StoreError(f"table name {name!r} is reserved or empty")
        return self._index.table(name, cache_size=0 if self.read_only else 10)

    def _rows(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """cid -> (doc id, index row); rebuilt only when the conversations table changed."""
        data = self._index_storage.read() or {}
        raw = data.get(CONV_TABLE, {})
        if raw is not self._rows_src:
            self._rows_map = {
                doc["id"]: (int(key), doc) for key, doc in raw.items()
                if isinstance(doc.get("id"), str)
            }
            self._rows_src = raw
        return self._rows_map

    def _row(self, cid: str) -> dict[str, Any]:
        if not isinstance(cid, str) or not _ID_OK.match(cid):
            raise NotFoundError(f"no conversation {cid!r}")
        found = self._rows().get(cid)
        if found is None:
            raise NotFoundError(f"no conversation {cid!r}")
        return found[1]

    def _conv_path(self, cid: str) -> Path:
        return self.data_dir / CONV_DIR / f"{cid}.json"

    def _conv_db(self, cid: str) -> TinyDB:
        db = self._convs.get(cid)
        if db is not None:
            self._convs.move_to_end(cid)
            return db
        db = TinyDB(
            self._conv_path(cid), storage=AtomicJSONStorage, read_only=self.read_only,
            read_only_reason=self._reason, notices=self.notices,
        )
        self._convs[cid] = db
        while len(self._convs) > OPEN_CONVERSATIONS:
            self._convs.popitem(last=False)[1].close()
        return db

    def _touch(self, cid: str) -> None:
        """Remember a conversation's new counters (written to the index later)."""
        db = self._conv_db(cid)
        sig = cast(AtomicJSONStorage, db.storage).cached_signature
        self._live[cid] = {
            "updated": time.time(),
            "message_count": len(db.table(MSG_TABLE, cache_size=0)),
            "sig": list(sig) if sig else None,
        }

    def _write_rows(self, changes: dict[str, dict[str, Any]]) -> None:
        """One index write: the given row changes plus every pending counter."""
        merged = {cid: dict(fields) for cid, fields in self._live.items()}
        for cid, fields in changes.items():
            merged.setdefault(cid, {}).update(fields)
        rows = self._rows()
        doc_ids = [rows[cid][0] for cid in merged if cid in rows]
        if not doc_ids:
            self._live.clear()
            return

        def apply(doc: MutableMapping[str, Any]) -> None:
            doc.update(merged[doc["id"]])

        self._conv_table().update(apply, doc_ids=doc_ids)
        self._live.clear()

    def _derived_counters(self, cid: str, row: dict[str, Any]) -> dict[str, Any] | None:
        """Counters from the conversation file when the index row is stale, else None."""
        path = self._conv_path(cid)
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        sig = list(signature(st)) if st is not None else None
        if sig == row.get("sig") and not (sig is None and path.with_suffix(".json.bak").exists()):
            return None
        cached = self._derived.get(cid)
        if cached is not None and cached[0] == sig:
            return cached[1]
        db = self._convs.get(cid)
        storage = cast(AtomicJSONStorage, db.storage) if db is not None else AtomicJSONStorage(
            path, read_only=self.read_only, read_only_reason=self._reason, notices=self.notices)
        data = storage.read() or {}
        new_sig = storage.cached_signature
        derived = {
            "updated": max(float(row.get("updated", 0.0)), st.st_mtime if st else 0.0),
            "message_count": len(data.get(MSG_TABLE, {})),
            "sig": list(new_sig) if new_sig else None,
        }
        if self.read_only:
            self._derived[cid] = (sig, derived)
        return derived

    def _reconcile(self) -> None:
        """After a crash: re-derive the rows whose conversation file changed since written."""
        for cid, (_, row) in self._rows().items():
            derived = self._derived_counters(cid, row)
            if derived is not None:
                self._live[cid] = derived
        if self._live:
            self._write_rows({})

    def _meta(self, cid: str, row: dict[str, Any]) -> ConversationMeta:
        live = self._live.get(cid)
        if live is None and self.read_only:
            live = self._derived_counters(cid, row)
        return meta_from_row(row, live)

    # -- conversations -----------------------------------------------------------------------

    @locked
    def list_conversations(self) -> list[ConversationMeta]:
        """Pinned first, then the most recently updated."""
        metas = [self._meta(cid, row) for cid, (_, row) in self._rows().items()]
        metas.sort(key=sort_key, reverse=True)
        return metas

    @locked
    def create_conversation(
        self, title: str = "New conversation", *, system_prompt: str = "",
        model: str | None = None, options: ConversationOptions | None = None,
    ) -> ConversationMeta:
        self._check_writable()
        now = time.time()
        row: dict[str, Any] = {
            "id": new_id("c"), "title": title, "created": now, "updated": now, "pinned": False,
            "system_prompt": system_prompt, "model": model, "message_count": 0,
            "options": options_to_doc(options) if options is not None else {}, "sig": None,
        }
        self._conv_table().insert(row)
        return meta_from_row(row)

    @locked
    def get_conversation(self, cid: str) -> ConversationMeta:
        return self._meta(cid, self._row(cid))

    _CHANGEABLE: ClassVar[dict[str, tuple[type[Any], ...]]] = {
        "title": (str,), "pinned": (bool,), "system_prompt": (str,),
        "model": (str, type(None)), "options": (ConversationOptions,),
    }

    @locked
    def update_conversation(self, cid: str, **changes: Any) -> ConversationMeta:
        """Change title, pinned, system_prompt, model or options (replaced whole: to change
        some options and keep the rest, use ``update_options``)."""
        self._check_writable()
        self._row(cid)
        for key, value in changes.items():
            kinds = self._CHANGEABLE.get(key)
            if kinds is None:
                raise StoreError(f"cannot change {key!r} of a conversation")
            if not isinstance(value, kinds):
                raise StoreError(f"{key} should be {kinds[0].__name__}, got {value!r}")
        if "options" in changes:
            changes = {**changes, "options": options_to_doc(changes["options"])}
        self._write_rows({cid: copy.deepcopy(changes)})
        return self._meta(cid, self._row(cid))

    @locked
    def update_options(self, cid: str, **changes: Any) -> ConversationMeta:
        """Change some of a conversation's options, keeping the others as stored now (several
        screens change options; none may undo another's change)."""
        options = self._meta(cid, self._row(cid)).options.replace(**changes)
        return self.update_conversation(cid, options=options)

    @locked
    def delete_conversation(self, cid: str) -> None:
        self._check_writable()
        self._row(cid)
        doc_id = self._rows()[cid][0]
        self._live.pop(cid, None)
        self._conv_table().remove(doc_ids=[doc_id])
        db = self._convs.pop(cid, None)
        if db is not None:
            db.close()
        path = self._conv_path(cid)
        for victim in (path.with_name(path.name + ".bak"), path):
            try:
                victim.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.notices.append(f"could not remove {victim} ({exc.strerror})")
        if self._last_opened is not None and self._last_opened[0] == cid:
            self._last_opened = None

    @locked
    def last_conversation_id(self) -> str | None:
        """The conversation most recently updated or opened (with ``messages()``)."""
        metas = self.list_conversations()
        newest = max(metas, key=lambda m: m.updated, default=None)
        opened = self._last_opened
        if (
            opened is not None
            and opened[0] in self._rows()
            and (newest is None or opened[1] >= newest.updated)
        ):
            return opened[0]
        return newest.id if newest is not None else None

    # -- messages ----------------------------------------------------------------------------

    @locked
    def messages(self, cid: str) -> list[StoredMessage]:
        """The conversation's messages in order; also marks it as the last one opened."""
        msgs = self._load_messages(cid)
        meta = self._meta(cid, self._row(cid))
        if meta.message_count != len(msgs) and not self.read_only:
            # The file was restored from its backup since the index was written.
            sig = cast(AtomicJSONStorage, self._conv_db(cid).storage).cached_signature
            self._live[cid] = {"updated": meta.updated, "message_count": len(msgs),
                               "sig": list(sig) if sig else None}
        self._last_opened = (cid, time.time())
        self._last_opened_dirty = True
        return msgs
