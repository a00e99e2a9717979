"""A conversation is a tree: every message has a parent (None for a first message).

Regenerating a reply adds a sibling beside the old one; editing an earlier prompt adds a
sibling beside that prompt. The *shown branch* is the path from a first message to a leaf
through the message the conversation points at (``shown``): up from it to the root, and down
from it by the newest child each time. So appending below the branch's last message keeps it
shown without moving the pointer, and only a new branch or a switch between siblings moves it.

The functions here work on ``(id, parent)`` pairs in the order the messages were saved, so the
store can find a branch's end from its raw documents; ``ConversationTree`` is the same on
``StoredMessage`` records, for callers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .models import StoredMessage

Links = dict[str | None, list[str]]
"""Parent id (None: the roots) -> children ids, oldest first."""


def links(pairs: Iterable[tuple[str, str | None]]) -> tuple[dict[str, str | None], Links]:
    """(parent of each id, children of each id). A parent that is not a message of the
    conversation, or a loop of parents (a damaged or hand-edited file), makes a root."""
    items = list(pairs)
    known = {mid for mid, _ in items}
    parent_of: dict[str, str | None] = {}
    in_order = True
    for mid, parent in items:
        if mid not in parent_of:  # a duplicate id: the first one wins
            up = parent if parent in known and parent != mid else None
            in_order = in_order and (up is None or up in parent_of)
            parent_of[mid] = up
    if not in_order:  # saved messages always follow their parent: only a damaged file loops
        _cut_loops(parent_of)
    children: Links = {None: []}
    for mid, parent in parent_of.items():
        children.setdefault(parent, []).append(mid)
    return parent_of, children


def _cut_loops(parent_of: dict[str, str | None]) -> None:
    """Make a root of one message in each loop of parents."""
    done: set[str] = set()
    for mid in parent_of:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = mid
        while node is not None and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parent_of[node]
        if node is not None and node in on_path:
            parent_of[path[-1]] = None
        done.update(path)


def branch_ids(parent_of: dict[str, str | None], children: Links, shown: str | None
               ) -> list[str]:
    """The ids of the shown branch, first message first."""
    start = shown if shown in parent_of else None
    path: list[str] = []
    seen: set[str] = set()
    node = start
    while node is not None and node not in seen:
        seen.add(node)
        path.append(node)
        node = parent_of.get(node)
    path.reverse()
    node = start
    while children.get(node):
        node = children[node][-1]
        if node in seen:
            break  # a cycle in a damaged file
        seen.add(node)
        path.append(node)
    return path


def subtree_ids(children: Links, root: str) -> list[str]:
    """``root`` and every message below it."""
    out = [root]
    seen = {root}
    i = 0
    while i < len(out):
        for child in children.get(out[i], ()):
            if child not in seen:
                seen.add(child)
                out.append(child)
        i += 1
    return out


@dataclass(frozen=True)
class ConversationTree:
    """Every message of a conversation (in the order saved) and the branch shown."""

    messages: tuple[StoredMessage, ...]
    shown: str | None = None
    """The message the shown branch goes through (None: the newest first message's)."""
    _parent_of: dict[str, str | None] = field(init=False, repr=False, compare=False)
    _children: Links = field(init=False, repr=False, compare=False)
    _by_id: dict[str, StoredMessage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parent_of, children = links((m.id, m.parent) for m in self.messages)
        object.__setattr__(self, "_parent_of", parent_of)
        object.__setattr__(self, "_children", children)
        by_id: dict[str, StoredMessage] = {}
        for m in self.messages:
            by_id.setdefault(m.id, m)
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def linear(cls, messages: Sequence[StoredMessage]) -> ConversationTree:
        return cls(tuple(messages))

    def __contains__(self, mid: object) -> bool:
        return mid in self._by_id

    def get(self, mid: str) -> StoredMessage | None:
        return self._by_id.get(mid)

    def parent(self, mid: str) -> str | None:
        return self._parent_of.get(mid)

    @property
    def branch(self) -> list[StoredMessage]:
        """The messages shown, first first."""
        return [self._by_id[mid] for mid in branch_ids(self._parent_of, self._children,
                                                       self.shown)]

    @property
    def leaf(self) -> StoredMessage | None:
        branch = branch_ids(self._parent_of, self._children, self.shown)
        return self._by_id[branch[-1]] if branch else None

    def children(self, mid: str | None) -> list[StoredMessage]:
        return [self._by_id[c] for c in self._children.get(mid, ())]

    def siblings(self, mid: str) -> list[StoredMessage]:
        """``mid`` and the other versions of it (same parent), oldest first."""
        if mid not in self._parent_of:
            return []
        return self.children(self._parent_of[mid])

    def position(self, mid: str) -> tuple[int, int]:
        """(1-based place among its siblings, how many there are)."""
        ids = self._children.get(self._parent_of.get(mid), [])
        return (ids.index(mid) + 1, len(ids)) if mid in ids else (0, 0)

    def path_to(self, mid: str) -> list[StoredMessage]:
        """The history up to and including ``mid``."""
        ids: list[str] = []
        node: str | None = mid if mid in self._parent_of else None
        while node is not None and node not in ids:
            ids.append(node)
            node = self._parent_of.get(node)
        return [self._by_id[i] for i in reversed(ids)]

    def subtree(self, mid: str) -> list[StoredMessage]:
        """``mid`` and every message below it, in every branch."""
        if mid not in self._parent_of:
            return []
        return [self._by_id[i] for i in subtree_ids(self._children, mid)]

    def show(self, mid: str) -> ConversationTree:
        """The same tree with the branch through ``mid`` shown."""
        return ConversationTree(self.messages, mid if mid in self._parent_of else self.shown)
