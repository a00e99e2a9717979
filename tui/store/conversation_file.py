"""One conversation's file: its metadata and its messages, a tree (see ``tree``).

The file is a TinyDB database with two tables::

    conversation  {"1": {id, title, created, updated, pinned, system_prompt, model, options,
                         shown}}      what the index lists, so a lost index is rebuilt from it
    messages      {"1": {id, role, content, created, parent, ...}, ...}   in the order saved

Every change is one atomic write of this file (a new branch and the pointer to it go together).
The metadata is a few hundred bytes beside the messages and changes only when the user renames,
pins, edits options or moves to another branch; appending along the shown branch leaves it as
it is. Messages saved before conversations were trees have no ``parent``: each follows the one
saved before it, and the next write records that.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tui.i18n import _

from .errors import NotFoundError
from .models import StoredMessage, message_from_doc
from .storage import AtomicJSONStorage, Signature
from .tree import ConversationTree, branch_ids, links, subtree_ids

META_TABLE = "conversation"
MSG_TABLE = "messages"
META_DOC = "1"
ROW_FIELDS = ("title", "created", "updated", "pinned", "system_prompt", "model", "options",
              "legacy_extra")
"""What a conversation's file and its index row both carry."""
TITLE_CHARS = 40
Data = dict[str, dict[str, Any]]


def title_from(text: str) -> str:
    """A title from a first prompt (a file that lost its metadata)."""
    line = " ".join(text.split())
    if not line:
        return "Untitled"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def with_parents(docs: dict[str, dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(id, parent) of every message, in order; one saved before trees follows the previous."""
    pairs: list[tuple[str, str | None]] = []
    previous: str | None = None
    for doc in docs.values():
        mid = str(doc.get("id", ""))
        parent = doc.get("parent", previous)
        pairs.append((mid, parent if isinstance(parent, str) else None))
        previous = mid
    return pairs


def record_parents(docs: dict[str, dict[str, Any]]) -> None:
    """Write the implied parent into the messages saved before trees (in place)."""
    if all("parent" in doc for doc in docs.values()):
        return
    for doc, (_mid, parent) in zip(docs.values(), with_parents(docs), strict=True):
        doc.setdefault("parent", parent)


def messages_of(data: Data) -> list[StoredMessage]:
    docs = data.get(MSG_TABLE, {})
    out = []
    for doc, (_mid, parent) in zip(docs.values(), with_parents(docs), strict=True):
        msg = message_from_doc(doc)
        msg.parent = parent
        out.append(msg)
    return out


def meta_of(data: Data) -> dict[str, Any]:
    doc = data.get(META_TABLE, {}).get(META_DOC)
    return doc if isinstance(doc, dict) else {}


def shown_of(data: Data) -> str | None:
    shown = meta_of(data).get("shown")
    return shown if isinstance(shown, str) else None


def index_row(cid: str, data: Data, *, known: dict[str, Any] | None = None,
              mtime: float = 0.0) -> dict[str, Any]:
    """The index row for a conversation, from its file (the file wins; what it lacks comes
    from ``known``, the old row, else from its messages)."""
    meta = meta_of(data)
    docs = data.get(MSG_TABLE, {})
    known = known or {}
    times = [float(d["created"]) for d in docs.values()
             if isinstance(d.get("created"), int | float) and not isinstance(d["created"], bool)]
    row: dict[str, Any] = {"id": cid}
    for key in ROW_FIELDS:
        if key in meta:
            row[key] = meta[key]
        elif key in known:
            row[key] = known[key]
    if "title" not in row:
        first = next((d.get("content") for d in docs.values() if d.get("role") == "user"), "")
        row["title"] = title_from(first if isinstance(first, str) else "")
    row.setdefault("created", min(times, default=mtime or time.time()))
    row.setdefault("pinned", False)
    row.setdefault("system_prompt", "")
    row.setdefault("model", None)
    row.setdefault("options", {})
    row["updated"] = max([float(row.get("updated", row["created"])), *times])
    row["message_count"] = len(docs)
    return row


class ConversationFile:
    """Reads and changes one conversation file (the caller holds the store's mutex)."""

    def __init__(self, path: Path, *, read_only: bool = False, read_only_reason: str = "",
                 notices: list[str] | None = None) -> None:
        self.path = path
        self.cid = path.name.removesuffix(".json")
        self.storage = AtomicJSONStorage(path, read_only=read_only,
                                         read_only_reason=read_only_reason, notices=notices)
        self._leaf: tuple[Signature | None, str | None] | None = None

    # -- reading -------------------------------------------------------------------------------

    def data(self) -> Data:
        """The parsed file (the cached parse: do not change it)."""
        return self.storage.read() or {}

    @property
    def signature(self) -> Signature | None:
        return self.storage.cached_signature

    def exists(self) -> bool:
        return self.path.exists() or self.storage.backup_path.exists()

    def messages(self) -> list[StoredMessage]:
        return messages_of(self.data())

    def tree(self) -> ConversationTree:
        data = self.data()
        return ConversationTree(tuple(messages_of(data)), shown_of(data))

    def leaf_id(self) -> str | None:
        """The last message of the shown branch (what a new message follows by default)."""
        data = self.data()
        sig = self.signature
        if self._leaf is not None and self._leaf[0] == sig and sig is not None:
            return self._leaf[1]
        parent_of, children = links(with_parents(data.get(MSG_TABLE, {})))
        branch = branch_ids(parent_of, children, shown_of(data))
        leaf = branch[-1] if branch else None
        self._leaf = (sig, leaf)
        return leaf

    def has(self, mid: str) -> bool:
        return any(doc.get("id") == mid for doc in self.data().get(MSG_TABLE, {}).values())

    def _key_of(self, docs: dict[str, dict[str, Any]], mid: str) -> str:
        for key, doc in reversed(docs.items()):
            if doc.get("id") == mid:
                return key
        raise NotFoundError(_("no message {mid!r} in conversation {cid!r}", mid=mid, cid=self.cid))

    # -- writing (each method is one atomic write; a failed write leaves the file as it was) ----

    def _current(self) -> Data:
        """The parse to change in place: a failed write drops it (the storage re-reads)."""
        data = self.storage.read()
        return data if data is not None else {}

    def _write(self, data: Data) -> None:
        """Save a change that may move the branch's end (found again on the next read)."""
        self.storage.write(data)
        self._leaf = None

    def _write_keeping(self, data: Data, leaf: str | None) -> None:
        """Save a change after which the branch ends at ``leaf``."""
        self.storage.write(data)
        self._leaf = (self.signature, leaf)

    def create(self, meta: dict[str, Any], docs: dict[str, dict[str, Any]] | None = None
               ) -> None:
        """Write a new conversation's file (no backup: there is no previous copy)."""
        self.storage.write_raw({META_TABLE: {META_DOC: meta}, MSG_TABLE: docs or {}})
        self._leaf = None

    def set_meta(self, changes: dict[str, Any]) -> None:
        data = self._current()
        meta = data.setdefault(META_TABLE, {}).setdefault(META_DOC, {})
        meta.update(changes)
        self._write(data)

    def append(self, doc: dict[str, Any]) -> None:
        """Add a message; when it does not follow the shown branch's last message, it starts
        a new branch and that branch is shown."""
        leaf = self.leaf_id()
        data = self._current()
        docs = data.setdefault(MSG_TABLE, {})
        record_parents(docs)
        key = str(max((int(k) for k in docs), default=0) + 1)
        docs[key] = doc
        if doc.get("parent") != leaf:
            data.setdefault(META_TABLE, {}).setdefault(META_DOC, {})["shown"] = doc["id"]
        self._write_keeping(data, doc["id"])

    def update(self, mid: str, fields: dict[str, Any]) -> None:
        data = self._current()
        docs = data.get(MSG_TABLE, {})
        docs[self._key_of(docs, mid)].update(fields)
        known = self._leaf if self._leaf is not None and self._leaf[0] == self.signature \
            else None
        if known is not None:
            self._write_keeping(data, known[1])
        else:
            self._write(data)

    def show(self, mid: str) -> None:
        data = self._current()
        self._key_of(data.get(MSG_TABLE, {}), mid)
        if shown_of(data) == mid:
            return
        data.setdefault(META_TABLE, {}).setdefault(META_DOC, {})["shown"] = mid
        self._write(data)

    def remove_subtree(self, mid: str) -> list[str]:
        """Delete ``mid`` and everything below it; the branch shown moves to a sibling (the
        one before, else after), else to the parent. Returns the ids deleted."""
        data = self._current()
        docs = data.get(MSG_TABLE, {})
        self._key_of(docs, mid)
        record_parents(docs)
        parent_of, children = links(with_parents(docs))
        gone = set(subtree_ids(children, mid))
        meta = data.setdefault(META_TABLE, {}).setdefault(META_DOC, {})
        if mid in branch_ids(parent_of, children, shown_of(data)):
            siblings = children.get(parent_of.get(mid), [])
            at = siblings.index(mid)
            others = siblings[:at][-1:] or siblings[at + 1:at + 2]
            meta["shown"] = others[0] if others else parent_of.get(mid)
        data[MSG_TABLE] = {k: d for k, d in docs.items() if d.get("id") not in gone}
        self._write(data)
        return [d["id"] for d in docs.values() if d.get("id") in gone]

    def remove_one(self, mid: str) -> None:
        """Delete one message; its replies move up to its parent."""
        data = self._current()
        docs = data.get(MSG_TABLE, {})
        key = self._key_of(docs, mid)
        record_parents(docs)
        parent = docs[key].get("parent")
        moved = [d for d in docs.values() if d.get("parent") == mid]
        for doc in moved:
            doc["parent"] = parent
        meta = data.get(META_TABLE, {}).get(META_DOC)
        if isinstance(meta, dict) and meta.get("shown") == mid:
            meta["shown"] = moved[-1]["id"] if moved else parent
        del docs[key]
        self._write(data)

    def unlink(self) -> list[str]:
        """Remove the file and its backup; returns what could not be removed, as lines."""
        problems = []
        for victim in (self.storage.backup_path, self.path):
            try:
                os.unlink(victim)
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(_("could not remove {victim} ({strerror})",
                                  victim=victim, strerror=exc.strerror))
        self.storage.close()
        self._leaf = None
        return problems

    def close(self) -> None:
        self.storage.close()
