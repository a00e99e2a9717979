"""Conversations as trees in the store: versions of a reply or a prompt, the branch shown,
fork, delete a subtree, search into hidden branches, export and import of the tree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.store import ConversationTree, NotFoundError, Store, StoredMessage, StoreError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data: Path) -> Iterator[Store]:
    with Store.open(data) as s:
        yield s


def contents(messages: list[StoredMessage]) -> list[str]:
    return [m.content for m in messages]


def test_a_plain_conversation_is_a_chain(store: Store) -> None:
    c = store.create_conversation()
    u = store.append_message(c.id, "user", "q")
    a = store.append_message(c.id, "assistant", "a")
    assert (u.parent, a.parent) == (None, u.id)
    assert contents(store.branch(c.id)) == ["q", "a"] == contents(store.messages(c.id))


def test_regenerate_three_times_then_move_between_the_versions(data: Path) -> None:
    with Store.open(data) as s:
        c = s.create_conversation()
        u = s.append_message(c.id, "user", "question")
        answers = [s.append_message(c.id, "assistant", f"answer {n}", parent=u.id)
                   for n in range(1, 5)]
        tree = s.tree(c.id)
        assert contents(tree.branch) == ["question", "answer 4"]  # the newest version shown
        assert contents(tree.siblings(answers[0].id)) == [f"answer {n}" for n in range(1, 5)]
        assert [tree.position(a.id) for a in answers] == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert contents(s.show(c.id, answers[1].id).branch) == ["question", "answer 2"]
        # the conversation goes on from the version shown
        follow = s.append_message(c.id, "user", "tell me more")
        assert follow.parent == answers[1].id
        assert contents(s.branch(c.id)) == ["question", "answer 2", "tell me more"]
    with Store.open(data) as s:  # which branch is shown is kept
        assert contents(s.branch(c.id)) == ["question", "answer 2", "tell me more"]
        assert s.get_conversation(c.id).message_count == 6
        s.show(c.id, answers[3].id)
        assert contents(s.branch(c.id)) == ["question", "answer 4"]
        s.show(c.id, answers[1].id)  # back: down the newest child again
        assert contents(s.branch(c.id)) == ["question", "answer 2", "tell me more"]


def test_edit_an_early_prompt_then_go_back_to_the_old_branch(store: Store) -> None:
    c = store.create_conversation()
    u1 = store.append_message(c.id, "user", "first")
    store.append_message(c.id, "assistant", "one")
    u2 = store.append_message(c.id, "user", "second")
    store.append_message(c.id, "assistant", "two")
    edited = store.append_message(c.id, "user", "first, better", parent=u1.parent)
    assert edited.parent is None  # a new first message: a second root
    store.append_message(c.id, "assistant", "one, better")
    assert contents(store.branch(c.id)) == ["first, better", "one, better"]
    tree = store.tree(c.id)
    assert tree.position(edited.id) == (2, 2) and tree.position(u1.id) == (1, 2)
    old = store.show(c.id, u1.id)
    assert contents(old.branch) == ["first", "one", "second", "two"]
    # edit the second prompt of the old branch: a sibling of u2
    store.append_message(c.id, "user", "second, again", parent=u2.parent)
    assert contents(store.branch(c.id)) == ["first", "one", "second, again"]
    assert len(store.messages(c.id)) == 7


def test_a_parent_must_exist(store: Store) -> None:
    c = store.create_conversation()
    with pytest.raises(NotFoundError, match="no message 'nope'"):
        store.append_message(c.id, "user", "x", parent="nope")
    with pytest.raises(NotFoundError):
        store.show(c.id, "nope")
    assert store.messages(c.id) == []


def test_fork_copies_the_history_up_to_a_message(store: Store) -> None:
    c = store.create_conversation("Plans", system_prompt="be brief", model="m")
    store.update_options(c.id, persona="guide")
    u = store.append_message(c.id, "user", "q1")
    a1 = store.append_message(c.id, "assistant", "a1")
    store.append_message(c.id, "assistant", "a1 again", parent=u.id)
    store.append_message(c.id, "user", "q2")
    fork = store.fork(c.id, a1.id)
    assert fork.id != c.id and fork.title == "Plans (fork)" and fork.message_count == 2
    assert (fork.system_prompt, fork.model, fork.options.persona) == ("be brief", "m", "guide")
    copied = store.branch(fork.id)
    assert contents(copied) == ["q1", "a1"] and copied[1].parent == copied[0].id
    assert {m.id for m in copied}.isdisjoint(m.id for m in store.messages(c.id))
    store.append_message(fork.id, "user", "only in the fork")
    assert "only in the fork" not in contents(store.messages(c.id))
    with pytest.raises(NotFoundError):
        store.fork(c.id, "nope")


def test_delete_a_subtree_moves_the_branch_to_a_sibling(store: Store) -> None:
    c = store.create_conversation()
    u = store.append_message(c.id, "user", "q")
    a1 = store.append_message(c.id, "assistant", "a1")
    store.append_message(c.id, "user", "under a1")
    a2 = store.append_message(c.id, "assistant", "a2", parent=u.id)
    u2 = store.append_message(c.id, "user", "under a2")
    store.append_message(c.id, "assistant", "deeper")
    gone = store.delete_subtree(c.id, a2.id)
    assert len(gone) == 3 and a2.id in gone and u2.id in gone
    assert contents(store.branch(c.id)) == ["q", "a1", "under a1"]
    assert store.get_conversation(c.id).message_count == 3
    store.delete_subtree(c.id, a1.id)
    assert contents(store.branch(c.id)) == ["q"]  # no sibling left: the parent
    store.delete_subtree(c.id, u.id)
    assert store.messages(c.id) == [] and store.branch(c.id) == []


def test_delete_one_message_keeps_what_followed(store: Store) -> None:
    c = store.create_conversation()
    store.append_message(c.id, "user", "q")
    a = store.append_message(c.id, "assistant", "a")
    store.append_message(c.id, "user", "q2")
    store.delete_message(c.id, a.id)
    branch = store.branch(c.id)
    assert contents(branch) == ["q", "q2"] and branch[1].parent == branch[0].id


def test_search_finds_text_in_a_hidden_branch(store: Store) -> None:
    c = store.create_conversation("Versions")
    u = store.append_message(c.id, "user", "q")
    hidden = store.append_message(c.id, "assistant", "the zebra answer")
    store.append_message(c.id, "assistant", "the other answer", parent=u.id)
    assert hidden.id not in {m.id for m in store.branch(c.id)}
    (hit,) = store.search("zebra")
    assert (hit.conversation_id, hit.message_id) == (c.id, hidden.id)
    assert contents(store.show(hit.conversation_id, hit.message_id).branch) == [
        "q", "the zebra answer"]


def test_export_keeps_the_tree_and_import_reads_it_back(store: Store) -> None:
    c = store.create_conversation("Tree")
    u = store.append_message(c.id, "user", "q")
    a1 = store.append_message(c.id, "assistant", "a1")
    store.append_message(c.id, "assistant", "a2", parent=u.id)
    store.append_message(c.id, "user", "q2")
    store.show(c.id, a1.id)
    md = store.export_markdown(c.id)
    assert "a1" in md and "a2" not in md and "q2" not in md  # the branch shown
    data = json.loads(json.dumps(store.export_json(c.id)))
    assert data["version"] == 2 and len(data["messages"]) == 4 and data["shown"] == a1.id
    copy = store.import_json(data)
    assert copy.message_count == 4
    old, new = store.tree(c.id), store.tree(copy.id)
    assert contents(new.branch) == ["q", "a1"]
    assert [(m.content, old.get(m.parent).content if m.parent else None)
            for m in old.messages] == [
        (m.content, new.get(m.parent).content if m.parent else None)
        for m in new.messages]


def test_import_reads_the_first_export_format(store: Store) -> None:
    old_export = {  # lmdesk 0.1: a list of messages, no parents, "extra" for options
        "format": "lmdesk-conversation", "version": 1,
        "conversation": {"title": "Old", "created": 1000.0, "extra": {"persona": "guide"}},
        "messages": [{"id": "m1", "role": "user", "content": "hi", "created": 1001.0},
                     {"id": "m2", "role": "assistant", "content": "hello", "created": 1002.0},
                     {"id": "m1", "role": "user", "content": "again", "created": 1003.0}],
    }
    meta = store.import_json(old_export)
    branch = store.branch(meta.id)
    assert contents(branch) == ["hi", "hello", "again"] and meta.options.persona == "guide"
    assert [m.parent for m in branch] == [None, branch[0].id, branch[1].id]


@pytest.mark.parametrize("parent", ["m9", "m2", 7])
def test_import_refuses_a_parent_that_is_not_an_earlier_message(store: Store,
                                                                 parent: object) -> None:
    bad = {"format": "lmdesk-conversation", "version": 2, "conversation": {"title": "x"},
           "messages": [{"id": "m1", "role": "user", "content": "a", "parent": None},
                        {"id": "m2", "role": "assistant", "content": "b", "parent": parent}]}
    with pytest.raises(StoreError, match=r"message 2's parent .* is not an earlier message"):
        store.import_json(bad)
    assert store.list_conversations() == []


def test_a_damaged_file_with_a_cycle_still_opens(data: Path) -> None:
    with Store.open(data) as s:
        c = s.create_conversation()
        s.append_message(c.id, "user", "q")
        s.append_message(c.id, "assistant", "a")
    path = data / "conversations" / f"{c.id}.json"
    doc = json.loads(path.read_text())
    first, second = doc["messages"]["1"], doc["messages"]["2"]
    first["parent"], second["parent"] = second["id"], first["id"]
    path.write_text(json.dumps(doc))
    with Store.open(data) as s:
        assert sorted(contents(s.branch(c.id))) == ["a", "q"]


def test_the_tree_is_pure() -> None:
    def msg(mid: str, parent: str | None) -> StoredMessage:
        return StoredMessage(mid, "user", mid, 0.0, parent=parent)

    tree = ConversationTree((msg("a", None), msg("b", "a"), msg("c", "a"), msg("d", "b")))
    assert [m.id for m in tree.branch] == ["a", "c"]
    assert [m.id for m in tree.show("b").branch] == ["a", "b", "d"]
    assert [m.id for m in tree.show("d").path_to("d")] == ["a", "b", "d"]
    assert [m.id for m in tree.subtree("b")] == ["b", "d"] and tree.subtree("x") == []
    assert tree.show("x").shown is None and tree.position("x") == (0, 0)
