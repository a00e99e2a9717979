"""A lost index never hides a conversation; named tables live in files of their own; a
folder written by the previous version (schema 2) is upgraded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui.models.profiles import ProfileLibrary
from tui.prompting.memory import MemoryStore
from tui.prompting.personas import PersonaLibrary
from tui.prompting.templates import TemplateLibrary
from tui.store import ConversationOptions, Store, schema

V2_FOLDER = Path(__file__).parent / "store_fixtures" / "v2"
"""Written by lmdesk 117ec4b itself (tests/store_helpers/make_v2_folder.py)."""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def fill(data: Path) -> dict[str, str]:
    """Three conversations with everything the index lists, and a memory."""
    with Store.open(data) as s:
        a = s.create_conversation("Alpha", system_prompt="be brief", model="m1",
                                  options=ConversationOptions(persona="guide"))
        s.append_message(a.id, "user", "one")
        s.append_message(a.id, "assistant", "two")
        b = s.create_conversation("Beta")
        s.update_conversation(b.id, pinned=True, title="Beta!")
        s.append_message(b.id, "user", "three")
        c = s.create_conversation("Empty")
        MemoryStore(s).add("I live in Porto")
        s.set_setting("theme", "nord")
    return {"Alpha": a.id, "Beta!": b.id, "Empty": c.id}


def damage_index(data: Path) -> None:
    (data / "index.json").write_bytes(b'{"conversations": {"1": {"id": "c')
    (data / "index.json.bak").write_bytes(b"\x00\x00")


def snapshot(data: Path) -> dict[str, bytes]:
    """The conversation files and the memory table, byte for byte."""
    return {str(p.relative_to(data)): p.read_bytes() for p in data.rglob("*")
            if p.is_file() and (p.parent.name == "conversations" or "memory" in p.name)}


def test_a_lost_index_is_rebuilt_from_the_conversation_files(data: Path) -> None:
    ids = fill(data)
    with Store.open(data) as s:
        before = [(m.id, m.title, m.pinned, m.system_prompt, m.model, m.options,
                   m.message_count, m.created) for m in s.list_conversations()]
    files = snapshot(data)
    damage_index(data)
    with Store.open(data) as s:
        (notice,) = s.notices
        rebuilt = [(m.id, m.title, m.pinned, m.system_prompt, m.model, m.options,
                    m.message_count, m.created) for m in s.list_conversations()]
        assert rebuilt == before
        assert [m.content for m in s.branch(ids["Alpha"])] == ["one", "two"]
        assert [m.text for m in MemoryStore(s).list_memories()] == ["I live in Porto"]
        assert s.get_setting("theme") == "nord"
    assert "could not be read" in notice and "its backup neither" in notice
    assert "the list of 3 conversations was rebuilt from their files" in notice
    # both damaged copies were set aside, named in the notice; nothing else was touched
    aside = sorted(p.name for p in data.glob("index.json*corrupt-*"))
    assert len(aside) == 2 and all(name in notice for name in aside)
    assert snapshot(data) == files
    with Store.open(data) as s:  # said once: the rebuilt index is saved
        assert s.notices == [] and len(s.list_conversations()) == 3


def test_a_missing_index_is_rebuilt_and_said(data: Path) -> None:
    fill(data)
    for name in ("index.json", "index.json.bak"):
        (data / name).unlink()
    with Store.open(data) as s:
        assert s.notices == [f"{data / 'index.json'} was missing; the list of 3 "
                             "conversations was rebuilt from their files."]
        assert {m.title for m in s.list_conversations()} == {"Alpha", "Beta!", "Empty"}


def test_read_only_lists_from_the_files_and_writes_nothing(data: Path) -> None:
    fill(data)
    damage_index(data)
    before = {p.name: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with Store.open(data, read_only=True) as s:
        assert {m.title for m in s.list_conversations()} == {"Alpha", "Beta!", "Empty"}
        (notice,) = [n for n in s.notices if "index.json" in n]
        assert "3 conversations are listed from their files" in notice
        assert "read-only" in notice
    assert {p.name: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


def test_an_older_index_copy_lists_the_newer_conversations_too(data: Path) -> None:
    with Store.open(data) as s:
        s.create_conversation("Old")
        s.create_conversation("Also old")
    older = (data / "index.json").read_bytes()
    with Store.open(data) as s:
        new = s.create_conversation("New")
        s.append_message(new.id, "user", "hello")
    (data / "index.json").write_bytes(b"garbage")
    (data / "index.json.bak").write_bytes(older)  # a backup from before "New"
    with Store.open(data) as s:
        titles = {m.title for m in s.list_conversations()}
        assert titles == {"Old", "Also old", "New"}
        (notice,) = s.notices
        assert "The last good copy was restored" in notice
        assert "1 conversation missing from that copy was listed again" in notice


def test_a_deleted_conversation_stays_deleted_after_a_crash(data: Path) -> None:
    with Store.open(data) as s:
        keep = s.create_conversation("keep")
        gone = s.create_conversation("gone")
    # the state a crash leaves between removing the file and writing the index
    (data / "conversations" / f"{gone.id}.json").unlink()
    with Store.open(data) as s:
        assert [m.id for m in s.list_conversations()] == [keep.id] and s.notices == []


def test_each_table_is_a_file_and_a_damaged_one_costs_only_itself(data: Path) -> None:
    fill(data)
    with Store.open(data) as s:
        MemoryStore(s).add("second memory")
        TemplateLibrary(s).create("mine", "Say {{ x }}")
    tables = data / "tables"
    assert {p.name for p in tables.glob("*.json")} >= {"memory.json", "settings.json",
                                                       "templates.json"}
    (tables / "memory.json").write_bytes(b"{broken")
    with Store.open(data) as s:
        assert [m.text for m in MemoryStore(s).list_memories()] == ["I live in Porto"]
        assert TemplateLibrary(s).get("mine").body == "Say {{ x }}"
        assert len(s.list_conversations()) == 3
        (notice,) = s.notices
        assert "memory.json could not be read" in notice and "last good copy" in notice


def test_an_append_writes_the_conversation_file_only(data: Path) -> None:
    ids = fill(data)
    others = {p: p.stat().st_mtime_ns for p in data.rglob("*.json")
              if ids["Alpha"] not in p.name}
    with Store.open(data) as s:
        for n in range(5):
            s.append_message(ids["Alpha"], "user", f"more {n}")
        assert {p: p.stat().st_mtime_ns for p in others} == others


def test_the_upgrade_of_a_folder_written_by_the_previous_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(V2_FOLDER, data)
    old_index = json.loads((data / "index.json").read_text())
    assert schema.version_of(old_index) == 2
    old_rows = {r["title"]: r for r in old_index["conversations"].values()}
    with Store.open(data) as s:
        assert s.notices == []
        metas = {m.title: m for m in s.list_conversations()}
        assert set(metas) == {"Trip to Lisbon", "Nothing yet", "Reverse a string"}
        trip = metas["Trip to Lisbon"]
        assert trip.pinned and trip.system_prompt == "Be brief." and trip.message_count == 4
        assert trip.options.persona == "guide" and trip.options.memory is False
        assert metas["Reverse a string"].options.tools == ("calc",)
        branch = s.branch(trip.id)
        assert [m.content for m in branch][-1] == "Try a tasca in"
        assert [m.parent for m in branch] == [None, *(m.id for m in branch[:-1])]
        assert branch[1].reasoning == "three days, three areas"
        assert branch[-1].can_continue
        assert {m.text for m in MemoryStore(s).list_memories()} == {
            "I live in Porto", "I prefer metric units"}
        assert TemplateLibrary(s).get("standup").title == "Stand-up"
        assert PersonaLibrary(s).get("guide").name == "Tour guide"
        assert ProfileLibrary(s).get("terse").n_ctx == 2048
        assert s.get_setting("theme") == "nord"
    index = json.loads((data / "index.json").read_text())
    assert set(index) == {"meta", "conversations"}
    assert schema.version_of(index) == schema.current_version()
    assert json.loads((data / "index.json.schema-v2").read_text()) == old_index
    for title, row in old_rows.items():  # each file carries what the index needs
        conv = json.loads((data / "conversations" / f"{row['id']}.json").read_text())
        meta = conv["conversation"]["1"]
        assert (meta["title"], meta["pinned"], meta["options"]) == (
            title, row["pinned"], row["options"])
        assert all("parent" in m for m in conv["messages"].values())
    # and now a lost index costs nothing, the conversation without messages included
    (data / "index.json").unlink()
    (data / "index.json.bak").unlink()
    with Store.open(data) as s:
        assert {m.title for m in s.list_conversations()} == set(metas)
        assert s.get_conversation(trip.id).pinned


def test_a_previous_version_folder_that_lost_its_index_is_listed_from_messages(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(V2_FOLDER, data)
    damage_index(data)
    with Store.open(data) as s:
        titles = sorted(m.title for m in s.list_conversations())
        assert titles == ["Plan three days in Lisbon", "Reverse a string in Python"]
        (notice,) = s.notices
        assert "rebuilt from their files" in notice
        trip = next(m for m in s.list_conversations() if m.title.startswith("Plan"))
        assert s.branch(trip.id)[0].content == "Plan three days in Lisbon"


def test_read_only_on_a_folder_not_yet_upgraded_reads_its_tables(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(V2_FOLDER, data)
    with Store.open(data, read_only=True) as s:
        assert {m.text for m in MemoryStore(s).list_memories()} == {
            "I live in Porto", "I prefer metric units"}
        assert len(s.list_conversations()) == 3 and s.get_setting("theme") == "nord"
        assert any("older schema" in n for n in s.notices)
    assert not (data / "tables").exists()
