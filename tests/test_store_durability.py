"""Crashes, damaged files, a full disk, a second instance and old data folders."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tui.store import ConversationOptions, Store, StoreError, StoreReadOnly, schema
from tui.store.storage import AtomicJSONStorage

HELPER = Path(__file__).parent / "store_helpers" / "store_proc.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HELPER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=ENV,
    )


def read_line(stream: IO[str] | None) -> str:
    assert stream is not None
    line = stream.readline()
    assert line, "the helper process exited early"
    return line.strip()


def leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.rglob("*") if ".tmp-" in p.name)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


# -- one writer ----------------------------------------------------------------------------


@pytest.fixture
def holder(data: Path) -> Iterator[subprocess.Popen[str]]:
    with Store.open(data) as s:
        c = s.create_conversation("before")
        s.append_message(c.id, "user", "hello")
    proc = spawn("hold", str(data))
    try:
        assert read_line(proc.stdout) == "ready False"
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


def test_second_instance_is_read_only(data: Path, holder: subprocess.Popen[str]) -> None:
    with Store.open(data) as s:
        assert s.read_only
        assert any(f"another lmdesk is running (pid {holder.pid}); opened read-only" in n
                   for n in s.notices), s.notices
        (meta,) = s.list_conversations()
        assert meta.title == "before" and [m.content for m in s.messages(meta.id)] == ["hello"]
        writes: list[Callable[[], Any]] = [
            lambda: s.create_conversation(),
            lambda: s.append_message(meta.id, "user", "x"),
            lambda: s.update_conversation(meta.id, title="y"),
            lambda: s.delete_conversation(meta.id),
            lambda: s.set_setting("k", 1),
            lambda: s.table("personas").insert({"n": 1}),
            lambda: s.import_json(s.export_json(meta.id)),
        ]
        for write in writes:
            with pytest.raises(StoreReadOnly, match=f"read-only because another lmdesk is "
                                                    f"running \\(pid {holder.pid}\\)"):
                write()
        assert s.get_setting("k") is None and s.table("personas").all() == []
        # The writer's changes show up in the read-only instance.
        assert holder.stdin is not None
        holder.stdin.write(f"append {meta.id} from the writer\n")
        holder.stdin.flush()
        assert read_line(holder.stdout).startswith("ok ")
        assert [m.content for m in s.messages(meta.id)] == ["hello", "from the writer"]
        assert s.list_conversations()[0].message_count == 2
    holder.stdin.close()
    holder.wait(timeout=30)
    with Store.open(data) as s:  # the lock is free again
        assert not s.read_only and s.notices == []
        assert s.list_conversations()[0].message_count == 2


def test_explicit_read_only_changes_nothing(data: Path) -> None:
    with Store.open(data) as s:
        s.create_conversation("x")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with Store.open(data, read_only=True) as s:
        assert s.read_only and len(s.list_conversations()) == 1
        with pytest.raises(StoreReadOnly):
            s.create_conversation()
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


# -- damaged files -------------------------------------------------------------------------


def test_damaged_index_is_set_aside_and_backup_restored(data: Path) -> None:
    with Store.open(data) as s:
        a = s.create_conversation("A")
        s.create_conversation("B")
    garbage = b'{"conversations": {"1": {"id": "c'
    (data / "index.json").write_bytes(garbage)
    with Store.open(data) as s:
        assert a.id in [m.id for m in s.list_conversations()]
        assert len(s.notices) == 1 and "last good copy was restored" in s.notices[0]
        (aside,) = data.glob("index.json.corrupt-*")
        assert aside.read_bytes() == garbage and aside.name in s.notices[0]
        s.create_conversation("C")  # and it works normally
    with Store.open(data) as s:
        assert s.notices == [] and "C" in [m.title for m in s.list_conversations()]


@pytest.mark.parametrize("garbage", [b"", b"\x00\x00\x00", b"[1, 2]", b'{"messages": [1]}'])
def test_damaged_conversation_without_backup_starts_empty(data: Path, garbage: bytes) -> None:
    with Store.open(data) as s:
        c = s.create_conversation("A")
        s.append_message(c.id, "user", "only one")
    conv = data / "conversations" / f"{c.id}.json"
    conv.with_name(conv.name + ".bak").unlink()  # the copy from before the append
    conv.write_bytes(garbage)
    with Store.open(data) as s:
        assert s.messages(c.id) == []
        assert any("no usable backup, so it starts empty" in n for n in s.notices), s.notices
        (aside,) = conv.parent.glob(f"{conv.name}.corrupt-*")
        assert aside.read_bytes() == garbage
        s.append_message(c.id, "user", "again")
        assert [m.content for m in s.messages(c.id)] == ["again"]


def test_damaged_conversation_restored_from_backup(data: Path) -> None:
    with Store.open(data) as s:
        c = s.create_conversation("A")
        for i in range(3):
            s.append_message(c.id, "user", f"m{i}")
    conv = data / "conversations" / f"{c.id}.json"
    conv.write_bytes(conv.read_bytes()[:-10])  # torn write
    with Store.open(data, read_only=True) as s:  # read-only: shown from the backup, untouched
        assert [m.content for m in s.messages(c.id)] == ["m0", "m1"]
        assert any("left as it is" in n for n in s.notices)
        assert list(conv.parent.glob("*.corrupt-*")) == []
    with Store.open(data) as s:
        assert [m.content for m in s.messages(c.id)] == ["m0", "m1"]
        assert any("last good copy was restored" in n for n in s.notices)
        assert len(list(conv.parent.glob(f"{conv.name}.corrupt-*"))) == 1
        assert s.get_conversation(c.id).message_count == 2


def test_damage_found_after_open_fixes_the_count(data: Path) -> None:
    with Store.open(data) as s:
        c = s.create_conversation("A")
        for i in range(3):
            s.append_message(c.id, "user", f"m{i}")
        conv = data / "conversations" / f"{c.id}.json"
        st = conv.stat()
        conv.write_bytes(b"\x00" * st.st_size)  # damaged while open, same size and mtime
        os.utime(conv, ns=(st.st_atime_ns, st.st_mtime_ns))
        s._convs.clear()  # as if it had dropped out of the in-memory cache
        assert s.get_conversation(c.id).message_count == 3
        assert [m.content for m in s.messages(c.id)] == ["m0", "m1"]
        assert s.get_conversation(c.id).message_count == 2
    with Store.open(data) as s:
        assert s.get_conversation(c.id).message_count == 2


# -- a full disk ---------------------------------------------------------------------------


def _enospc(*_: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_on_write_keeps_the_file(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(data) as s:
        c = s.create_conversation("A")
        s.append_message(c.id, "user", "kept")
        conv = data / "conversations" / f"{c.id}.json"
        index = data / "index.json"
        before = (conv.read_bytes(), index.read_bytes())
        real_write = os.write

        def full_for_temp_files(fd: int, payload: Any) -> int:
            if ".tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
                _enospc()
            return real_write(fd, payload)

        monkeypatch.setattr(os, "write", full_for_temp_files)
        with pytest.raises(StoreError, match=r"^disk full: "):
            s.append_message(c.id, "user", "lost")
        with pytest.raises(StoreError, match=r"^disk full: "):
            s.set_setting("theme", "x")
        with pytest.raises(StoreError, match=r"^disk full: "):
            s.create_conversation("B")
        assert (conv.read_bytes(), index.read_bytes()) == before
        assert leftovers(data) == []
        assert [m.content for m in s.messages(c.id)] == ["kept"]
        monkeypatch.setattr(os, "fsync", _enospc)
        monkeypatch.setattr(os, "write", real_write)
        with pytest.raises(StoreError, match=r"^disk full: "):
            s.append_message(c.id, "user", "lost too")
        assert conv.read_bytes() == before[0] and leftovers(data) == []
        monkeypatch.undo()
        s.append_message(c.id, "user", "after")
        assert [m.content for m in s.messages(c.id)] == ["kept", "after"]
        assert [m.title for m in s.list_conversations()] == ["A"]
    with Store.open(data) as s:
        assert s.notices == [] and s.get_conversation(c.id).message_count == 2


# -- schema versions -----------------------------------------------------------------------


def write_v0_folder(data: Path) -> None:
    """A data folder from before versions were recorded: rows missing most fields."""
    (data / "conversations").mkdir(parents=True)
    old = {"conversations": {"1": {"id": "cold1", "title": "Old chat", "created": 1000.0}}}
    (data / "index.json").write_text(json.dumps(old))
    msgs = {"messages": {"1": {"id": "m1", "role": "user", "content": "from v0",
                               "created": 1001.0}}}
    (data / "conversations" / "cold1.json").write_text(json.dumps(msgs))


def test_upgrade_from_a_fake_old_file(data: Path) -> None:
    write_v0_folder(data)
    with Store.open(data) as s:
        (meta,) = s.list_conversations()
        assert (meta.id, meta.title, meta.pinned, meta.options) == (
            "cold1", "Old chat", False, ConversationOptions())
        assert meta.message_count == 1  # derived from the file
        assert [m.content for m in s.messages("cold1")] == ["from v0"]
        s.append_message("cold1", "assistant", "now")
    index = json.loads((data / "index.json").read_text())
    assert index["meta"]["1"]["schema"] == schema.current_version() == len(schema.UPGRADES)
    row = index["conversations"]["1"]
    assert row["pinned"] is False and row["system_prompt"] == "" and row["message_count"] == 2
    kept = json.loads((data / "index.json.schema-v0").read_text())
    assert "meta" not in kept and kept["conversations"]["1"]["title"] == "Old chat"


def test_upgrade_steps_run_in_order_from_the_stored_version(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_v0_folder(data)
    ran: list[str] = []

    def step(name: str, real: schema.UpgradeStep | None = None) -> schema.UpgradeStep:
        def run(index: schema.Index, folder: Path) -> schema.Index:
            ran.append(name)
            assert folder == data
            index = real(index, folder) if real else index
            index.setdefault("notes", {})[str(len(ran))] = {"step": name}
            return index
        return run

    monkeypatch.setattr(schema, "UPGRADES", [step("0->1", schema.UPGRADES[0]),
                                             step("1->2"), step("2->3")])
    Store.open(data).close()
    assert ran == ["0->1", "1->2", "2->3"]
    index = json.loads((data / "index.json").read_text())
    assert index["meta"]["1"]["schema"] == 3 and len(index["notes"]) == 3
    ran.clear()
    monkeypatch.setattr(schema, "UPGRADES", [*schema.UPGRADES, step("3->4")])
    with Store.open(data) as s:
        assert ran == ["3->4"] and [m.title for m in s.list_conversations()] == ["Old chat"]
    ran.clear()
    Store.open(data).close()
    assert ran == []


def test_newer_schema_opens_read_only(data: Path) -> None:
    Store.open(data).close()
    index = json.loads((data / "index.json").read_text())
    index["meta"]["1"]["schema"] = 99
    (data / "index.json").write_text(json.dumps(index))
    with Store.open(data) as s:
        assert s.read_only and any("newer lmdesk (schema 99" in n for n in s.notices)
        with pytest.raises(StoreReadOnly, match="newer lmdesk"):
            s.create_conversation()
    assert json.loads((data / "index.json").read_text())["meta"]["1"]["schema"] == 99


# -- killed writers ------------------------------------------------------------------------


def test_storage_backup_is_the_previous_good_copy(tmp_path: Path) -> None:
    storage = AtomicJSONStorage(tmp_path / "db.json")
    storage.write({"t": {"1": {"v": 1}}})
    storage.read()
    storage.write({"t": {"1": {"v": 2}}})
    assert json.loads((tmp_path / "db.json.bak").read_text()) == {"t": {"1": {"v": 1}}}
    assert json.loads((tmp_path / "db.json").read_text()) == {"t": {"1": {"v": 2}}}


def test_sigkill_at_random_moments_loses_nothing_saved(data: Path) -> None:
    rounds, seed = 30, random.randrange(1_000_000)
    rng = random.Random(seed)
    saved: dict[str, set[str]] = {}  # cid -> ids whose append returned
    streamed: dict[tuple[str, str], int] = {}  # content length whose update returned
    started = time.monotonic()
    for n in range(rounds):
        proc = spawn("write", str(data), str(seed + n))
        ready = read_line(proc.stdout)
        assert ready.startswith("ready "), ready
        saved.setdefault(ready.split()[1], set())
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        for line in out.splitlines():
            kind, *rest = line.split()
            if kind == "C":
                saved.setdefault(rest[0], set())
            elif kind == "A":
                saved.setdefault(rest[0], set()).add(rest[1])
            elif kind == "U":
                streamed[(rest[0], rest[1])] = int(rest[2])
        with Store.open(data) as s:
            why = f"round {n}, seed {seed}"
            assert not s.read_only, why
            assert s.notices == [], f"{why}: {s.notices}"
            metas = {m.id: m for m in s.list_conversations()}
            for cid, ids in saved.items():
                assert cid in metas, f"{why}: conversation {cid} lost"
                msgs = s.messages(cid)
                assert ids <= {m.id for m in msgs}, f"{why}: saved messages lost"
                assert metas[cid].message_count == len(msgs), why
                lengths = {m.id: len(m.content) for m in msgs}
                for (c, mid), length in streamed.items():
                    if c == cid:
                        assert lengths[mid] >= length, f"{why}: checkpoint lost"
        assert leftovers(data) == [], why
    total = sum(len(ids) for ids in saved.values())
    assert total > rounds, "the writer barely wrote anything; the test proves little"
    assert time.monotonic() - started < 60


def test_sigkill_during_branch_edits_keeps_every_acknowledged_message(data: Path) -> None:
    rounds, seed = 20, random.randrange(1_000_000)
    rng = random.Random(seed)
    parents: dict[str, str | None] = {}  # acknowledged message -> its parent
    deleted: set[str] = set()
    doomed: set[str] = set()  # subtrees whose deletion began (it may have been saved)

    def maybe_deleted(mid: str | None) -> bool:
        while mid is not None:
            if mid in doomed:
                return True
            mid = parents.get(mid)
        return False

    cid = ""
    for n in range(rounds):
        proc = spawn("branch", str(data), str(seed + n))
        ready = read_line(proc.stdout)
        assert ready.startswith("ready "), ready
        cid = ready.split()[1]
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        for line in out.splitlines():
            kind, _cid, *rest = line.split()
            if kind == "A":
                parents[rest[0]] = None if rest[1] == "-" else rest[1]
            elif kind == "X":
                doomed.add(rest[0])
            elif kind == "D":
                deleted.update(rest[0].split(","))
        with Store.open(data) as s:
            why = f"round {n}, seed {seed}"
            assert not s.read_only and s.notices == [], f"{why}: {s.notices}"
            tree = s.tree(cid)
            for mid, parent in parents.items():
                if mid in deleted:
                    assert mid not in tree, f"{why}: a deleted message came back"
                    continue
                got = tree.get(mid)
                if got is None and maybe_deleted(mid):
                    continue  # its deletion was saved, then the writer was killed
                assert got is not None, f"{why}: acknowledged message {mid} lost"
                assert got.parent == parent, f"{why}: {mid} lost its parent"
            branch = tree.branch
            assert [m.parent for m in branch] == [None, *(m.id for m in branch[:-1])], why
            assert s.get_conversation(cid).message_count == len(tree.messages), why
        assert leftovers(data) == [], why
    assert len(parents) > rounds, "the writer barely wrote anything; the test proves little"


def test_writer_killed_between_the_two_renames(tmp_path: Path) -> None:
    storage = AtomicJSONStorage(tmp_path / "db.json")
    storage.write({"t": {"1": {"v": 1}}})
    storage.read()
    # The state a SIGKILL leaves after "file -> .bak" but before "temp -> file": one inode.
    os.link(tmp_path / "db.json", tmp_path / "db.json.bak")
    storage.write({"t": {"1": {"v": 2}}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.json", "db.json.bak"]
    assert json.loads((tmp_path / "db.json.bak").read_text()) == {"t": {"1": {"v": 1}}}
