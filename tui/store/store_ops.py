"""Message operations, search, export and import: the half of ``Store`` that works on the
conversation files. Mixed into ``Store`` (see store.py for the folder layout)."""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from tinydb import TinyDB, where
from tinydb.table import Table

from .errors import NotFoundError, StoreError
from .exchange import export_json, export_markdown, parse_import, snippet
from .models import (
    ConversationMeta,
    SearchHit,
    StoredMessage,
    check_role,
    check_status,
    message_from_doc,
    message_to_doc,
    meta_from_row,
    new_id,
)
from .parts import Part, parts_from_docs, parts_to_docs, reasoning_of
from .storage import AtomicJSONStorage

MSG_TABLE = "messages"

F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """Serialise calls (the app calls from worker threads) and refuse a closed store."""

    @functools.wraps(fn)
    def wrapper(self: StoreOps, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            if self._closed:
                raise StoreError("the store is closed")
            return fn(self, *args, **kwargs)

    return cast(F, wrapper)


class StoreOps:
    """Needs from the Store: the attributes below and the ``_``-methods that raise here."""

    read_only: bool
    notices: list[str]
    data_dir: Path
    _reason: str
    _mutex: threading.RLock
    _closed: bool
    _convs: OrderedDict[str, TinyDB]

    def _row(self, cid: str) -> dict[str, Any]:
        raise NotImplementedError

    def _meta(self, cid: str, row: dict[str, Any]) -> ConversationMeta:
        raise NotImplementedError

    def _check_writable(self) -> None:
        raise NotImplementedError

    def _conv_db(self, cid: str) -> TinyDB:
        raise NotImplementedError

    def _conv_path(self, cid: str) -> Path:
        raise NotImplementedError

    def _conv_table(self) -> Table:
        raise NotImplementedError

    def _touch(self, cid: str) -> None:
        raise NotImplementedError

    def _settings(self) -> Table:
        raise NotImplementedError

    def _named_table(self, name: str) -> Table:
        raise NotImplementedError

    def list_conversations(self) -> list[ConversationMeta]:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    def _raw_messages(self, cid: str) -> dict[str, dict[str, Any]]:
        """The stored message documents by doc id, in order (the cached parse: don't mutate)."""
        self._row(cid)
        data = self._conv_db(cid).storage.read() or {}
        return data.get(MSG_TABLE, {})

    def _load_messages(self, cid: str) -> list[StoredMessage]:
        return [message_from_doc(doc) for doc in self._raw_messages(cid).values()]

    def _find(self, cid: str, mid: str) -> int:
        for key, doc in reversed(self._raw_messages(cid).items()):
            if doc.get("id") == mid:
                return int(key)
        raise NotFoundError(f"no message {mid!r} in conversation {cid!r}")

    def _msgs(self, cid: str) -> Table:
        return self._conv_db(cid).table(MSG_TABLE, cache_size=0)

    # -- messages ----------------------------------------------------------------------------

    @locked
    def append_message(
        self, cid: str, role: str, content: str, *, model: str | None = None,
        stats: dict[str, Any] | None = None, status: str = "done", error: str | None = None,
        parts: tuple[Part, ...] = (),
    ) -> StoredMessage:
        """Save one message now (one write of this conversation's file, not of the index).

        For a streaming reply: append with ``status="partial"``, then ``update_message`` with
        the content so far every few seconds, and a last time with the final status.
        """
        self._check_writable()
        self._row(cid)
        check_role(role)
        check_status(status)
        if not isinstance(content, str):
            raise StoreError(f"message content should be text, got {type(content).__name__}")
        msg = StoredMessage(
            id=new_id("m"), role=role, content=content, created=time.time(), model=model,
            stats=copy.deepcopy(stats), status=status, error=error, parts=tuple(parts),
        )
        self._msgs(cid).insert(message_to_doc(msg))
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
        doc_id = self._find(cid, mid)
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
        if fields:
            self._msgs(cid).update(fields, doc_ids=[doc_id])
            self._touch(cid)

    @locked
    def delete_message(self, cid: str, mid: str) -> None:
        self._check_writable()
        doc_id = self._find(cid, mid)
        self._msgs(cid).remove(doc_ids=[doc_id])
        self._touch(cid)

    # -- settings and named tables -----------------------------------------------------------

    @locked
    def get_setting(self, key: str, default: Any = None) -> Any:
        doc = self._settings().get(where("key") == key)
        return copy.deepcopy(doc["value"]) if isinstance(doc, dict) and "value" in doc else default

    @locked
    def set_setting(self, key: str, value: Any) -> None:
        """Any JSON value; the index is rewritten (settings change rarely)."""
        self._check_writable()
        doc = {"key": key, "value": copy.deepcopy(value)}
        self._settings().upsert(doc, where("key") == key)

    @locked
    def table(self, name: str) -> Table:
        """A TinyDB table in the index, saved atomically like everything else.

        Documents it returns share nested values with the cache: copy before mutating them.
        Writes raise ``StoreReadOnly`` in read-only mode. "meta" and "conversations" are
        reserved.
        """
        return self._named_table(name)

    # -- search ------------------------------------------------------------------------------

    @locked
    def search(self, query: str, limit: int = 50, *, reasoning: bool = False) -> list[SearchHit]:
        """Case-insensitive substring search over all messages, newest conversations first;
        with ``reasoning``, the reasoning of thinking models' replies too."""
        return self._search(query, limit, reasoning)

    def _search(self, query: str, limit: int, reasoning: bool = False) -> list[SearchHit]:
        if not query or limit <= 0:
            return []
        pattern = re.compile(re.escape(query), re.IGNORECASE)
        hits: list[SearchHit] = []
        for meta in self.list_conversations():
            if meta.id in self._convs:
                docs = self._raw_messages(meta.id)
            else:  # read without keeping every conversation parsed in memory
                storage = AtomicJSONStorage(
                    self._conv_path(meta.id), read_only=self.read_only,
                    read_only_reason=self._reason, notices=self.notices,
                )
                docs = (storage.read() or {}).get(MSG_TABLE, {})
            for doc in docs.values():
                content = doc.get("content")
                if not isinstance(content, str):
                    continue
                found = pattern.search(content)
                label = ""
                if found is None and reasoning and doc.get("parts"):
                    content = reasoning_of(parts_from_docs(doc.get("parts")))
                    found = pattern.search(content)
                    label = "(reasoning) "
                if found is None:
                    continue
                hits.append(SearchHit(
                    conversation_id=meta.id, message_id=str(doc.get("id", "")),
                    title=meta.title,
                    snippet=label + snippet(content, found.start(), found.end()),
                    role=str(doc.get("role", "")),
                ))
                if len(hits) >= limit:
                    return hits
        return hits

    # -- export and import -------------------------------------------------------------------

    @locked
    def export_markdown(self, cid: str) -> str:
        return export_markdown(self._meta(cid, self._row(cid)), self._load_messages(cid))

    @locked
    def export_json(self, cid: str) -> dict[str, Any]:
        """{"format": "lmdesk-conversation", "version": 1, "conversation": {...},
        "messages": [...]}"""
        return export_json(self._meta(cid, self._row(cid)), self._load_messages(cid))

    @locked
    def import_json(self, data: dict[str, Any]) -> ConversationMeta:
        """Add an exported conversation under a new id; ``StoreError`` says what is wrong."""
        self._check_writable()
        fields, messages = parse_import(data)
        cid = new_id("c")
        path = self._conv_path(cid)
        storage = AtomicJSONStorage(path, notices=self.notices)
        docs = {str(n): message_to_doc(m) for n, m in enumerate(messages, 1)}
        storage.write_raw({MSG_TABLE: docs})
        sig = storage.cached_signature
        row: dict[str, Any] = {
            "id": cid, **fields, "message_count": len(messages),
            "sig": list(sig) if sig else None,
        }
        try:
            self._conv_table().insert(row)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return meta_from_row(row)
