"""The store's API on real files: conversations, messages, search, export/import, settings."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.store import (
    ConversationOptions,
    NotFoundError,
    ReplyCheckpoint,
    Store,
    StoreError,
)
from tui.store.bench import run_store_bench


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data: Path) -> Iterator[Store]:
    with Store.open(data) as s:
        yield s


def test_fresh_folder_is_private_and_writable(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes must not depend on the user's umask
    try:
        data = tmp_path / "deep" / "data"
        with Store.open(data) as s:
            assert not s.read_only and s.notices == []
            c = s.create_conversation("private")
            s.append_message(c.id, "user", "one")
            s.append_message(c.id, "user", "two")  # second write: a .bak appears
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "conversations").stat().st_mode) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"index.json", "lmdesk.lock", f"{c.id}.json", f"{c.id}.json.bak"} <= names
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_existing_loose_folder_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    Store.open(data).close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_conversation_crud_and_order(store: Store, data: Path) -> None:
    a = store.create_conversation("A", system_prompt="be brief", model="m1")
    b = store.create_conversation("B")
    c = store.create_conversation("C")
    store.append_message(a.id, "user", "hi")  # A is now the most recent
    assert [m.title for m in store.list_conversations()] == ["A", "C", "B"]
    store.update_conversation(b.id, pinned=True, title="B!",
                              options=ConversationOptions(persona="x"))
    metas = store.list_conversations()
    assert [m.title for m in metas] == ["B!", "A", "C"]
    assert metas[0].pinned and metas[0].options == ConversationOptions(persona="x")
    got = store.get_conversation(a.id)
    assert (got.system_prompt, got.model, got.message_count) == ("be brief", "m1", 1)
    store.delete_conversation(c.id)
    assert [m.id for m in store.list_conversations()] == [b.id, a.id]
    assert not (data / "conversations" / f"{c.id}.json").exists()
    with pytest.raises(NotFoundError) as err:
        store.get_conversation(c.id)
    assert isinstance(err.value, KeyError) and isinstance(err.value, StoreError)
    assert c.id in str(err.value)
    with pytest.raises(StoreError, match="cannot change"):
        store.update_conversation(a.id, created=0)
    with pytest.raises(StoreError, match="pinned should be bool"):
        store.update_conversation(a.id, pinned="yes")
    with pytest.raises(NotFoundError):
        store.get_conversation("../../etc/passwd")


def test_messages_and_streaming_checkpoints(store: Store) -> None:
    c = store.create_conversation()
    u = store.append_message(c.id, "user", "question")
    r = store.append_message(c.id, "assistant", "", model="m", status="partial")
    store.update_message(c.id, r.id, content="half an")
    assert store.messages(c.id)[1].content == "half an"
    assert store.messages(c.id)[1].status == "partial"
    store.update_message(c.id, r.id, content="half an answer", status="done",
                         stats={"tokens": 3, "tps": 12.5})
    msgs = store.messages(c.id)
    assert [(m.id, m.role) for m in msgs] == [(u.id, "user"), (r.id, "assistant")]
    assert msgs[1].content == "half an answer" and msgs[1].status == "done"
    assert msgs[1].stats == {"tokens": 3, "tps": 12.5} and msgs[1].model == "m"
    msgs[1].stats["tokens"] = 99  # callers get copies
    assert store.messages(c.id)[1].stats == {"tokens": 3, "tps": 12.5}
    store.delete_message(c.id, u.id)
    assert [m.id for m in store.messages(c.id)] == [r.id]
    assert store.get_conversation(c.id).message_count == 1
    with pytest.raises(NotFoundError):
        store.update_message(c.id, "nope", content="x")
    with pytest.raises(StoreError, match="role"):
        store.append_message(c.id, "robot", "x")
    with pytest.raises(StoreError, match="status"):
        store.append_message(c.id, "user", "x", status="finished")
    with pytest.raises(NotFoundError):
        store.append_message("c-missing", "user", "x")
    with pytest.raises(StoreError, match=r"JSON|serializable"):
        store.append_message(c.id, "user", "x", stats={"bad": object()})
    assert [m.id for m in store.messages(c.id)] == [r.id]  # the failed append left nothing


def test_reply_checkpoint_saves_every_interval(store: Store) -> None:
    c = store.create_conversation()
    now = [0.0]
    cp = ReplyCheckpoint(store, c.id, model="m", interval=3.0, clock=lambda: now[0])
    assert store.messages(c.id)[0].status == "partial"
    now[0] = 1.0
    assert not cp.update("Hel")  # too soon
    now[0] = 3.5
    assert cp.update("Hello wor")
    assert store.messages(c.id)[0].content == "Hello wor"
    cp.finish("Hello world", status="stopped", stats={"n": 2})
    (msg,) = store.messages(c.id)
    assert (msg.content, msg.status, msg.stats, msg.model) == ("Hello world", "stopped",
                                                              {"n": 2}, "m")


def test_append_does_not_rewrite_index_but_reopen_is_correct(data: Path) -> None:
    with Store.open(data) as s:
        a = s.create_conversation("A")
        b = s.create_conversation("B")
        index = data / "index.json"
        before = (index.stat().st_ino, index.stat().st_mtime_ns, index.read_bytes())
        for i in range(20):
            s.append_message(a.id, "user", f"m{i}")
        after = (index.stat().st_ino, index.stat().st_mtime_ns, index.read_bytes())
        assert after == before, "an append rewrote the index"
        assert [(m.title, m.message_count) for m in s.list_conversations()] == [
            ("A", 20), ("B", 0)]
        s.append_message(b.id, "user", "later")
    with Store.open(data) as s:
        assert [(m.title, m.message_count) for m in s.list_conversations()] == [
            ("B", 1), ("A", 20)]


def test_counters_survive_a_crash_before_flush(data: Path) -> None:
    with Store.open(data) as s:
        old = s.create_conversation("old")
        s.append_message(old.id, "user", "x")
    helper = Path(__file__).parent / "store_helpers" / "store_proc.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([sys.executable, str(helper), "crash", str(data), "7"],
                          capture_output=True, text=True, timeout=60, env=env, check=True)
    cid = proc.stdout.strip()
    rows = json.loads((data / "index.json").read_text())["conversations"].values()
    assert {r["id"]: r["message_count"] for r in rows}[cid] == 0  # the index is stale
    with Store.open(data) as s:
        metas = s.list_conversations()
        assert [(m.id, m.message_count) for m in metas] == [(cid, 7), (old.id, 1)]
        assert s.last_conversation_id() == cid


def test_last_conversation_id(data: Path) -> None:
    with Store.open(data) as s:
        assert s.last_conversation_id() is None
        a = s.create_conversation("A")
        b = s.create_conversation("B")
        s.append_message(b.id, "user", "x")
        assert s.last_conversation_id() == b.id
        s.messages(a.id)  # opened after B's last update
        assert s.last_conversation_id() == a.id
    with Store.open(data) as s:
        assert s.last_conversation_id() == a.id
        s.append_message(b.id, "user", "y")
        assert s.last_conversation_id() == b.id


def test_search(store: Store) -> None:
    a = store.create_conversation("Cooking")
    b = store.create_conversation("Maths")
    store.append_message(a.id, "user", "How long to boil an EGG?\nSoft please.")
    store.append_message(b.id, "user", "what is 2+2")
    store.append_message(b.id, "assistant", "x " * 100 + "The egg problem: 2+2 = 4. " + "y " * 100)
    hits = store.search("egg")
    assert {(h.conversation_id, h.role) for h in hits} == {(a.id, "user"), (b.id, "assistant")}
    hit = next(h for h in hits if h.conversation_id == b.id)
    assert hit.title == "Maths" and "egg problem" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…") and len(hit.snippet) < 120
    assert "\n" not in next(h for h in hits if h.conversation_id == a.id).snippet
    assert [h.message_id for h in store.search("2+2")] == [m.id for m in store.messages(b.id)]
    assert len(store.search("2+2", limit=1)) == 1
    assert store.search("absent") == [] and store.search("") == []


def test_export_and_import_round_trip(store: Store) -> None:
    c = store.create_conversation("Trip", system_prompt="sys", model="m")
    store.update_options(c.id, persona="guide", knowledge_bases=("docs",))
    store.append_message(c.id, "user", "Plan a **trip**")
    store.append_message(c.id, "assistant", "Sure", model="m", stats={"tps": 3.0},
                         status="stopped")
    md = store.export_markdown(c.id)
    assert md.startswith("# Trip\n")
    assert "## System prompt\n\nsys" in md and "## User\n\nPlan a **trip**" in md
    assert "## Assistant\n\nSure" in md and "_(stopped)_" in md
    data = store.export_json(c.id)
    assert (data["format"], data["version"]) == ("lmdesk-conversation", 2)
    data = json.loads(json.dumps(data))  # through a file
    new = store.import_json(data)
    assert new.id != c.id and new.title == "Trip" and new.message_count == 2
    assert new.options == ConversationOptions(persona="guide", knowledge_bases=("docs",))
    assert new.system_prompt == "sys"
    old_msgs, new_msgs = store.messages(c.id), store.messages(new.id)
    assert [(m.role, m.content, m.stats, m.status) for m in new_msgs] == [
        (m.role, m.content, m.stats, m.status) for m in old_msgs]
    store.append_message(new.id, "user", "more")  # the imported one is a normal conversation
    assert store.get_conversation(new.id).message_count == 3


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ([], "JSON object"),
        ({"format": "other", "version": 1}, "format"),
        ({"format": "lmdesk-conversation", "version": 9, "conversation": {}, "messages": []},
         "version"),
        ({"format": "lmdesk-conversation", "version": 1, "messages": []}, "conversation"),
        ({"format": "lmdesk-conversation", "version": 1, "conversation": {}, "messages": {}},
         "messages"),
        ({"format": "lmdesk-conversation", "version": 1, "conversation": {},
          "messages": [{"role": "alien", "content": "x"}]}, "role"),
        ({"format": "lmdesk-conversation", "version": 1, "conversation": {},
          "messages": [{"role": "user", "content": 5}]}, "content"),
        ({"format": "lmdesk-conversation", "version": 1, "conversation": {"title": 3},
          "messages": []}, "title"),
        ({"format": "lmdesk-conversation", "version": 1, "conversation": {"created": "x"},
          "messages": []}, "created"),
    ],
)
def test_import_rejects_malformed(store: Store, payload: object, why: str) -> None:
    with pytest.raises(StoreError, match=f"not an lmdesk conversation export.*{why}"):
        store.import_json(payload)  # type: ignore[arg-type]
    assert store.list_conversations() == []


def test_settings_and_named_tables(data: Path) -> None:
    with Store.open(data) as s:
        assert s.get_setting("theme", "dark") == "dark"
        s.set_setting("theme", "light")
        s.set_setting("recent", [1, 2])
        s.set_setting("theme", "nord")
        s.get_setting("recent").append(3)  # a copy
        personas = s.table("personas")
        personas.insert({"name": "pirate", "prompt": "Arr"})
        with pytest.raises(StoreError, match="reserved"):
            s.table("conversations")
        with pytest.raises(StoreError):
            s.set_setting("bad", {1, 2})
        assert s.get_setting("bad") is None
    with Store.open(data) as s:
        assert s.get_setting("theme") == "nord" and s.get_setting("recent") == [1, 2]
        assert [d["name"] for d in s.table("personas").all()] == ["pirate"]


def test_closed_store_refuses(data: Path) -> None:
    s = Store.open(data)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.list_conversations()
    Store.open(data).close()  # the lock was released


def test_threads_can_share_a_store(store: Store) -> None:
    c = store.create_conversation()

    def worker(n: int) -> None:
        for i in range(25):
            store.append_message(c.id, "user", f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = [m.content for m in store.messages(c.id)]
    assert sorted(contents) == sorted(f"{n}-{i}" for n in range(4) for i in range(25))
    assert store.get_conversation(c.id).message_count == 100


def test_store_does_not_import_textual() -> None:
    code = "import sys, tui.store, tui.store.bench; print('textual' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_bench_runs_small(tmp_path: Path) -> None:
    lines: list[str] = []
    results = run_store_bench(lines.append, sizes=(3, 30), messages=10, appends=8,
                              long_conversation=200, base_dir=tmp_path)
    for key in ("append_median_ms_3", "append_p95_ms_30", "append_ratio", "load_ms_200"):
        assert results[key] > 0, key
    text = "\n".join(lines)
    assert "30 conversations: append median" in text and "200 messages" in text
    assert list(tmp_path.iterdir()) == []  # the temp data sets are removed
