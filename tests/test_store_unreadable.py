"""Issue 22, item 7: one conversation file that cannot be read (permissions, a disk error)
or is damaged costs that conversation only: the store opens, one line names the file, the
other conversations open as usual and nothing is changed or lost.

Tests run as root, where ``chmod 000`` does not stop a read: the read of that one path is
made to fail instead (``os.open`` raising ``PermissionError``, as it does for a user)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tui.prompting.memory import MemoryStore
from tui.store import Store, StoreError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def fill(data: Path) -> dict[str, str]:
    """Three conversations of two messages each, and a memory."""
    ids = {}
    with Store.open(data) as store:
        for title in ("Alpha", "Beta", "Gamma"):
            meta = store.create_conversation(title)
            store.append_message(meta.id, "user", f"question {title}")
            store.append_message(meta.id, "assistant", f"answer {title}")
            ids[title] = meta.id
        MemoryStore(store).add("I live in Porto")
    return ids


def conv_file(data: Path, cid: str) -> Path:
    return data / "conversations" / f"{cid}.json"


def refuse_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Every open of ``path`` fails with EACCES, as for a file of mode 000 to a user."""
    real_open: Callable[..., int] = os.open

    def guarded(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(os.fsdecode(file)) == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def changed_since_indexed(data: Path, cid: str) -> None:
    """The file's signature no longer matches its index row, so opening the store reads it
    (as after a crash before the index was written, or a file restored by hand)."""
    path = conv_file(data, cid)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))


def lose_index(data: Path) -> None:
    for name in ("index.json", "index.json.bak"):
        (data / name).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["changed", "index lost"])
def test_an_unreadable_conversation_file_is_named_and_the_rest_opens(
        data: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    ids = fill(data)
    bad = conv_file(data, ids["Beta"])
    before = bad.read_bytes()
    if how == "changed":
        changed_since_indexed(data, ids["Beta"])
    else:
        lose_index(data)
    refuse_reading(monkeypatch, bad)
    with Store.open(data) as store:
        named = [n for n in store.notices if str(bad) in n]
        assert len(named) == 1, store.notices
        assert "Permission denied" in named[0]
        titles = {m.title for m in store.list_conversations()}
        assert {"Alpha", "Gamma"} <= titles
        for title in ("Alpha", "Gamma"):
            assert [m.content for m in store.messages(ids[title])] == [
                f"question {title}", f"answer {title}"]
        assert [m.text for m in MemoryStore(store).list_memories()] == ["I live in Porto"]
        if how == "changed":  # its row is kept: still listed, and opening it says why not
            assert "Beta" in titles
            with pytest.raises(StoreError, match="Permission denied"):
                store.messages(ids["Beta"])
        # the others can still be written to
        store.append_message(ids["Alpha"], "user", "more")
    monkeypatch.undo()  # readable again: nothing was lost, moved or rewritten
    assert bad.read_bytes() == before
    assert sorted(p.name for p in bad.parent.iterdir() if ids["Beta"] in p.name) == [
        bad.name, bad.name + ".bak"]
    with Store.open(data) as store:
        assert {m.title for m in store.list_conversations()} == {"Alpha", "Beta", "Gamma"}
        assert [m.content for m in store.messages(ids["Beta"])] == [
            "question Beta", "answer Beta"]
        assert len(store.messages(ids["Alpha"])) == 3


def test_an_unreadable_conversation_file_read_only(data: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ids = fill(data)
    bad = conv_file(data, ids["Beta"])
    changed_since_indexed(data, ids["Beta"])
    refuse_reading(monkeypatch, bad)
    with Store.open(data, read_only=True) as store:
        assert {m.title for m in store.list_conversations()} == {"Alpha", "Beta", "Gamma"}
        assert len([n for n in store.notices if str(bad) in n]) == 1, store.notices
        assert len(store.messages(ids["Gamma"])) == 2


def test_a_damaged_conversation_file_is_named_and_the_rest_opens(data: Path) -> None:
    ids = fill(data)
    bad = conv_file(data, ids["Beta"])
    bad.write_bytes(b'{"_default": {"1": {"id": ')  # cut short by a crash outside lmdesk
    changed_since_indexed(data, ids["Beta"])
    with Store.open(data) as store:
        named = [n for n in store.notices if str(bad) in n]
        assert len(named) == 1, store.notices
        assert "not valid JSON" in named[0] and "set aside" in named[0]
        assert {m.title for m in store.list_conversations()} == {"Alpha", "Beta", "Gamma"}
        for title in ("Alpha", "Gamma"):
            assert len(store.messages(ids[title])) == 2
    aside = list(bad.parent.glob(f"{bad.name}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b'{"_default": {"1": {"id": '


@pytest.mark.parametrize("command", [["memory", "list"], ["templates", "list"],
                                     ["chats", "list"]])
def test_commands_run_beside_an_unreadable_conversation_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str]) -> None:
    from tui.cli import main

    data = Path(os.environ["LMDESK_DATA_DIR"])
    ids = fill(data)
    bad = conv_file(data, ids["Beta"])
    changed_since_indexed(data, ids["Beta"])
    refuse_reading(monkeypatch, bad)
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if bad.name in line] == [
        line for line in err.splitlines() if line.strip()], err
    assert bad.name in err and "Permission denied" in err
    if command[0] == "memory":
        assert "I live in Porto" in out
    elif command[0] == "chats":
        assert "Alpha" in out and "Gamma" in out
    else:
        assert out.strip()
