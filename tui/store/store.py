"""The Store: conversations (trees of messages), settings and named tables in one private
data folder.

Layout of the folder (0700, files 0600)::

    lmdesk.lock                 flock held by the one writer
    index.json                  the schema version and the list of conversations (a cache,
                                rebuilt from the conversation files when lost: see ``index``)
    conversations/<id>.json     one conversation: its metadata and its messages
    tables/<name>.json          one named table each: settings, memory, templates, personas...
    *.bak, *.corrupt-<time>     last good copies, damaged files set aside

Appending a message rewrites only that conversation's file; the index's counters follow
lazily (written with the next index change or at ``close()``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast

from tinydb import where
from tinydb.table import Table

from tui.config import ensure_private_dir
from tui.i18n import _

from . import schema
from .conversation_file import MSG_TABLE, ConversationFile, index_row
from .errors import NotFoundError, StoreError, StoreReadOnly
from .exchange import export_json, export_markdown, parse_import
from .index import CONV_DIR, CONV_TABLE, INDEX_NAME, ConversationIndex
from .lock import DataLock, acquire
from .models import (
    ConversationMeta,
    SearchHit,
    StoredMessage,
    check_role,
    check_status,
    message_to_doc,
    meta_from_row,
    new_id,
    sort_key,
)
from .options import ConversationOptions, options_to_doc
from .parts import Part, parts_to_docs
from .search import search_files
from .storage import remove_stale_temp_files
from .tables import TABLES_DIR, TableFiles
from .tree import ConversationTree

__all__ = ["CONV_DIR", "CONV_TABLE", "INDEX_NAME", "LEAF", "Store"]

SETTINGS_TABLE = "settings"
RESERVED_TABLES = frozenset({schema.META_TABLE, CONV_TABLE})
LAST_OPENED_KEY = "store.last_conversation"
OPEN_CONVERSATIONS = 8
"""Conversation files kept parsed in memory (least recently used dropped)."""

F = TypeVar("F", bound=Callable[..., Any])


class _Leaf(Enum):
    LEAF = "leaf"


LEAF = _Leaf.LEAF
"""``append_message``'s default parent: the last message of the branch shown."""


def locked(fn: F) -> F:
    """Serialise calls (the app calls from worker threads) and refuse a closed store."""

    @functools.wraps(fn)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            if self._closed:
                raise StoreError(_("the store is closed"))
            return fn(self, *args, **kwargs)

    return cast(F, wrapper)


class Store:
    """Open with ``Store.open(data_dir)``; use as a context manager or call ``close()``."""

    read_only: bool
    notices: list[str]
    """Lines to show the user: read-only mode, recovered, rebuilt or set-aside files. May grow
    later (a damaged conversation file is noticed when it is first read)."""
    data_dir: Path

    def __init__(self, data_dir: Path, *, lock: DataLock | None) -> None:
        """Use ``Store.open``."""
        self.data_dir = data_dir
        self.read_only = False
        self.notices = []
        self.read_only_notice: str | None = None
        """The notice that says this store is read-only and why (also in ``notices``)."""
        self._reason = ""
        self._lock = lock
        self._mutex = threading.RLock()
        self._closed = False
        self._convs: OrderedDict[str, ConversationFile] = OrderedDict()
        self._index = ConversationIndex(data_dir, self.notices, self._convs.get)
        self._tables = TableFiles(data_dir / TABLES_DIR, read_only=False, read_only_reason="",
                                  notices=self.notices)
        self._last_opened: tuple[str, float] | None = None
        self._last_opened_dirty = False

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, *, read_only: bool = False) -> Store:
        """Open the folder; take its lock, or open read-only (see ``notices``) if it is held."""
        data_dir = Path(data_dir).expanduser()
        lock: DataLock | None = None
        cause = _("it was opened read-only on purpose")
        held = False
        if not read_only:
            try:
                for folder in (data_dir, data_dir / CONV_DIR, data_dir / TABLES_DIR):
                    ensure_private_dir(folder)
            except OSError as exc:
                cause = _("the data folder {data_dir} cannot be created ({strerror})",
                          data_dir=data_dir, strerror=exc.strerror)
            else:
                lock, cause, held = acquire(data_dir)
        store = cls(data_dir, lock=lock)
        try:
            if lock is None:
                store._make_read_only(cause, tell=not read_only, held_by_other=held)
            else:
                for folder in (data_dir, data_dir / CONV_DIR, data_dir / TABLES_DIR):
                    remove_stale_temp_files(folder)
            existed = store._index.existed()
            newer = schema.prepare(store._index.storage, data_dir, store.notices)
            if newer:
                store._make_read_only(newer, tell=True)
            store._tables = TableFiles(
                data_dir / TABLES_DIR, read_only=store.read_only,
                read_only_reason=store._reason, notices=store.notices,
                legacy=store._legacy_tables())
            store._index.reconcile(existed=existed)
            store._tables.read_all()
            setting = store._settings().get(where("key") == LAST_OPENED_KEY)
            value = setting.get("value") if isinstance(setting, dict) else None
            if isinstance(value, list) and len(value) == 2:
                store._last_opened = (str(value[0]), float(value[1]))
        except BaseException:
            store._release()
            raise
        return store

    @property
    def read_only_reason(self) -> str:
        """Why nothing can be saved ("" when the store is writable)."""
        return self._reason

    def _legacy_tables(self) -> dict[str, dict[str, Any]] | None:
        """Read-only on a folder an older lmdesk still holds: its tables are in the index."""
        if not self.read_only:
            return None
        data = self._index.storage.read()
        if data is None or schema.version_of(data) >= schema.TABLES_IN_FILES:
            return None
        return data

    def _make_read_only(self, cause: str, *, tell: bool, held_by_other: bool = False) -> None:
        self.read_only = True
        self._reason = _("cannot save: this lmdesk is read-only because {cause}", cause=cause)
        if tell:
            until = (
                _("you close the other one and restart lmdesk")
                if held_by_other
                else _("the problem is fixed and lmdesk restarted")
            )
            self.read_only_notice = (
                _("{cause}; opened read-only: changes will not be saved until {until}.",
                  cause=cause, until=until)
            )
            self.notices.append(self.read_only_notice)
        self._index.set_read_only(self._reason)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @locked
    def flush(self) -> None:
        """Write pending conversation counters and the last-opened conversation."""
        if self.read_only:
            return
        self._index.flush()
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
                for file in self._convs.values():
                    file.close()
                self._convs.clear()
                self._tables.close()
                self._release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreReadOnly(self._reason)

    def _settings(self) -> Table:
        return self._tables.table(SETTINGS_TABLE)

    def _file(self, cid: str) -> ConversationFile:
        """The open file of a listed conversation (``NotFoundError`` for any other id)."""
        self._index.row(cid)
        file = self._convs.get(cid)
        if file is not None:
            self._convs.move_to_end(cid)
            return file
        file = ConversationFile(self._index.conv_path(cid), read_only=self.read_only,
                                read_only_reason=self._reason, notices=self.notices)
        self._convs[cid] = file
        while len(self._convs) > OPEN_CONVERSATIONS:
            self._convs.popitem(last=False)[1].close()
        return file

    def _touch(self, cid: str, *, bump: bool = True) -> None:
        """Remember a conversation's new counters (written to the index later)."""
        file = self._file(cid)
        sig = file.signature
        fields: dict[str, Any] = {
            "message_count": len(file.data().get(MSG_TABLE, {})),
            "sig": list(sig) if sig else None,
        }
        if bump:
            fields["updated"] = time.time()
        self._index.pending(cid, fields)

    def _meta(self, cid: str) -> ConversationMeta:
        return self._index.meta(cid)

    def _opened(self, cid: str) -> None:
        self._last_opened = (cid, time.time())
        self._last_opened_dirty = True

    # -- conversations -----------------------------------------------------------------------

    @locked
    def list_conversations(self) -> list[ConversationMeta]:
        """Pinned first, then the most recently updated."""
        metas = self._index.metas()
        metas.sort(key=sort_key, reverse=True)
        return metas

    @locked
    def create_conversation(
        self, title: str = "New conversation", *, system_prompt: str = "",
        model: str | None = None, options: ConversationOptions | None = None,
    ) -> ConversationMeta:
        self._check_writable()
        now = time.time()
        meta = {"title": title, "created": now, "updated": now, "pinned": False,
                "system_prompt": system_prompt, "model": model,
                "options": options_to_doc(options) if options is not None else {}}
        return self._add_conversation(meta, {})

    def _add_conversation(self, meta: dict[str, Any], docs: dict[str, dict[str, Any]]
                          ) -> ConversationMeta:
        """Write a new conversation's file, then its index row."""
        cid = new_id("c")
        file = ConversationFile(self._index.conv_path(cid), notices=self.notices)
        file.create({"id": cid, "shown": None, **meta}, docs)
        row = index_row(cid, file.data())
        sig = file.signature
        row["sig"] = list(sig) if sig else None
        try:
            self._index.save(add={cid: row})
        except BaseException:
            file.unlink()
            raise
        return meta_from_row(row)

    @locked
    def get_conversation(self, cid: str) -> ConversationMeta:
        return self._meta(cid)

    @locked
    def find_conversation(self, ref: str) -> ConversationMeta:
        """The conversation whose id is ``ref`` or the only one whose id starts with it."""
        rows = self._index.rows()
        if ref in rows:
            return self._meta(ref)
        matches = sorted(cid for cid in rows if ref and cid.startswith(ref))
        if len(matches) == 1:
            return self._meta(matches[0])
        if matches:
            raise StoreError(_("{ref!r} is the start of {count} conversations' ids: give more "
                               "of it", ref=ref, count=len(matches)))
        raise NotFoundError(_("no conversation {ref!r}", ref=ref))

    _CHANGEABLE: ClassVar[dict[str, tuple[type[Any], ...]]] = {
        "title": (str,), "pinned": (bool,), "system_prompt": (str,),
        "model": (str, type(None)), "options": (ConversationOptions,),
    }

    @locked
    def update_conversation(self, cid: str, **changes: Any) -> ConversationMeta:
        """Change title, pinned, system_prompt, model or options (replaced whole: to change
        some options and keep the rest, use ``update_options``). Written to the
        conversation's file first (the truth), then to the index."""
        self._check_writable()
        self._index.row(cid)
        for key, value in changes.items():
            kinds = self._CHANGEABLE.get(key)
            if kinds is None:
                raise StoreError(_("cannot change {key!r} of a conversation", key=key))
            if not isinstance(value, kinds):
                raise StoreError(_("{key} should be {name}, got {value!r}",
                                   key=key, name=kinds[0].__name__, value=value))
        if "options" in changes:
            changes = {**changes, "options": options_to_doc(changes["options"])}
        if not changes:
            return self._meta(cid)
        file = self._file(cid)
        file.set_meta(copy.deepcopy(changes))
        sig = file.signature
        self._index.save({cid: {**copy.deepcopy(changes), "sig": list(sig) if sig else None}})
        return self._meta(cid)

    @locked
    def update_options(self, cid: str, **changes: Any) -> ConversationMeta:
        """Change some of a conversation's options, keeping the others as stored now (several
        screens change options; none may undo another's change)."""
        options = self._meta(cid).options.replace(**changes)
        return self.update_conversation(cid, options=options)

    @locked
    def delete_conversation(self, cid: str) -> None:
        self._check_writable()
        file = self._file(cid)
        problems = file.unlink()
        self._convs.pop(cid, None)
        if file.path.exists():
            raise StoreError(problems[-1] if problems else _("could not remove {path}",
                                                             path=file.path))
        self.notices.extend(problems)
        self._index.save(drop=[cid])
        if self._last_opened is not None and self._last_opened[0] == cid:
            self._last_opened = None

    @locked
    def last_conversation_id(self) -> str | None:
        """The conversation most recently updated or opened (with ``messages()``), of those
        whose file could be read (the user was told of the others)."""
        skip = self._index.unreadable
        metas = [m for m in self.list_conversations() if m.id not in skip]
        newest = max(metas, key=lambda m: m.updated, default=None)
        opened = self._last_opened
        if (
            opened is not None
            and opened[0] in self._index.rows()
            and opened[0] not in skip
            and (newest is None or opened[1] >= newest.updated)
        ):
            return opened[0]
        return newest.id if newest is not None else None

    @locked
    def fork(self, cid: str, mid: str, title: str | None = None) -> ConversationMeta:
        """A new conversation holding the history up to and including message ``mid``
        (same system prompt, model and options)."""
        self._check_writable()
        path = self._file(cid).tree().path_to(mid)
        if not path:
            raise NotFoundError(_("no message {mid!r} in conversation {cid!r}", mid=mid, cid=cid))
        meta = self._meta(cid)
        docs: dict[str, dict[str, Any]] = {}
        previous: str | None = None
        for n, m in enumerate(path, 1):
            copied = dataclasses.replace(m, id=new_id("m"), parent=previous)
            docs[str(n)] = message_to_doc(copied)
            previous = copied.id
        now = time.time()
        fields = {"title": title or f"{meta.title} (fork)", "created": now, "updated": now,
                  "pinned": False, "system_prompt": meta.system_prompt, "model": meta.model,
                  "options": options_to_doc(meta.options)}
        return self._add_conversation(fields, docs)

    # -- messages ----------------------------------------------------------------------------

    @locked
    def messages(self, cid: str) -> list[StoredMessage]:
        """Every message, of every branch, in the order saved (``branch`` gives the one
        shown); also marks the conversation as the last one opened."""
        file = self._opening(cid)
        return file.messages()

    @locked
    def tree(self, cid: str) -> ConversationTree:
        """The conversation's messages and the branch shown; marks it as the last opened."""
        return self._opening(cid).tree()

    def _opening(self, cid: str) -> ConversationFile:
        file = self._file(cid)
        count = len(file.data().get(MSG_TABLE, {}))
        if not self.read_only and self._meta(cid).message_count != count:
            # the file was restored from its backup since the index was written
            self._touch(cid, bump=False)
        self._opened(cid)
        return file

    @locked
    def branch(self, cid: str) -> list[StoredMessage]:
        """The messages of the branch shown, first first: the conversation as it reads."""
        return self.tree(cid).branch

    @locked
    def show(self, cid: str, mid: str) -> ConversationTree:
        """Show the branch through message ``mid`` (kept for the next time it is opened)."""
        self._check_writable()
        file = self._file(cid)
        file.show(mid)
        self._touch(cid, bump=False)
        return file.tree()

    @locked
    def append_message(
        self, cid: str, role: str, content: str, *, model: str | None = None,
        stats: dict[str, Any] | None = None, status: str = "done", error: str | None = None,
        parts: tuple[Part, ...] = (), parent: str | _Leaf | None = LEAF,
    ) -> StoredMessage:
        """Save one message now (one write of this conversation's file, not of the index).

        It follows ``parent``: by default the last message of the branch shown; any other
        message (or None: a new first message) starts a new branch, which is then shown.
        For a streaming reply: append with ``status="partial"``, then ``update_message`` with
        the content so far every few seconds, and a last time with the final status.
        """
        self._check_writable()
        file = self._file(cid)
        check_role(role)
        check_status(status)
        if not isinstance(content, str):
            raise StoreError(_("message content should be text, got {name}",
                               name=type(content).__name__))
        if parent is LEAF:
            parent_id = file.leaf_id()
        else:
            parent_id = parent
            if parent_id is not None and not file.has(parent_id):
                raise NotFoundError(_("no message {parent_id!r} in conversation {cid!r}",
                                      parent_id=parent_id, cid=cid))
        msg = StoredMessage(
            id=new_id("m"), role=role, content=content, created=time.time(), model=model,
            stats=copy.deepcopy(stats), status=status, error=error, parts=tuple(parts),
            parent=parent_id,
        )
        file.append(message_to_doc(msg))
        self._touch(cid)
        return msg

    @locked
    def update_message(
        self, cid: str, mid: str, *, content: str | None = None, status: str | None = None,
        stats: dict[str, Any] | None = None, error: str | None = None,
        parts: tuple[Part, ...] | None = None,
    ) -> None:
        """Change the given fields of a message (None leaves a field as it is)."""
        self._check_writable()
        if status is not None:
            check_status(status)
        file = self._file(cid)
        fields: dict[str, Any] = {}
        if content is not None:
            fields["content"] = content
        if status is not None:
            fields["status"] = status
        if stats is not None:
            fields["stats"] = copy.deepcopy(stats)
        if error is not None:
            fields["error"] = error
        if parts is not None:
            fields["parts"] = parts_to_docs(parts)
        if not fields:
            file.update(mid, {})  # still: NotFoundError for an unknown message
            return
        file.update(mid, fields)
        self._touch(cid)

    @locked
    def delete_message(self, cid: str, mid: str) -> None:
        """Delete one message; the messages that followed it follow its parent instead."""
        self._check_writable()
        self._file(cid).remove_one(mid)
        self._touch(cid)

    @locked
    def delete_subtree(self, cid: str, mid: str) -> list[str]:
        """Delete a message and every message below it in every branch; the branch shown moves
        to a sibling (else to the parent). Returns the ids deleted."""
        self._check_writable()
        gone = self._file(cid).remove_subtree(mid)
        self._touch(cid)
        return gone

    # -- settings and named tables -----------------------------------------------------------

    @locked
    def get_setting(self, key: str, default: Any = None) -> Any:
        doc = self._settings().get(where("key") == key)
        return copy.deepcopy(doc["value"]) if isinstance(doc, dict) and "value" in doc else default

    @locked
    def set_setting(self, key: str, value: Any) -> None:
        """Any JSON value, saved in the settings file."""
        self._check_writable()
        doc = {"key": key, "value": copy.deepcopy(value)}
        self._settings().upsert(doc, where("key") == key)

    @locked
    def table(self, name: str) -> Table:
        """A TinyDB table in a file of its own (``tables/<name>.json``), saved atomically.

        Documents it returns share nested values with the cache: copy before mutating them.
        Writes raise ``StoreReadOnly`` in read-only mode. "meta" and "conversations" are
        reserved.
        """
        if not isinstance(name, str) or not name or name in RESERVED_TABLES:
            raise StoreError(_("table name {name!r} is reserved or empty", name=name))
        return self._tables.table(name)

    # -- search ------------------------------------------------------------------------------

    @locked
    def search(self, query: str, limit: int = 50, *, reasoning: bool = False) -> list[SearchHit]:
        """Case-insensitive substring search over every message of every branch, newest
        conversations first; with ``reasoning``, the reasoning of thinking models' replies
        too. A hit on a branch not shown opens with ``show(hit.conversation_id,
        hit.message_id)``."""
        files = ((meta, self._convs.get(meta.id) or ConversationFile(
            self._index.conv_path(meta.id), read_only=self.read_only,
            read_only_reason=self._reason, notices=self.notices))
            for meta in self.list_conversations())
        return search_files(files, query, limit, reasoning=reasoning)

    # -- export and import -------------------------------------------------------------------

    @locked
    def export_markdown(self, cid: str) -> str:
        """The branch shown, as a Markdown document."""
        return export_markdown(self._meta(cid), self._file(cid).tree().branch)

    @locked
    def export_json(self, cid: str) -> dict[str, Any]:
        """{"format": "lmdesk-conversation", "version": 2, "conversation": {...},
        "messages": [...every branch, each with its parent...], "shown": id}"""
        return export_json(self._meta(cid), self._file(cid).tree())

    @locked
    def import_json(self, data: dict[str, Any]) -> ConversationMeta:
        """Add an exported conversation (this version's or the first one's) under a new id;
        ``StoreError`` says what is wrong."""
        self._check_writable()
        fields, messages, shown = parse_import(data)
        docs = {str(n): message_to_doc(m) for n, m in enumerate(messages, 1)}
        return self._add_conversation({**fields, "shown": shown}, docs)
