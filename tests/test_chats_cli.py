"""`lmdesk chats ...` and `lmdesk ask --chat` as a user runs them: real processes, a real
data folder, the real default model for the turns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.prompting.memory import MemoryStore
from tui.store import Store

HELPER = Path(__file__).parent / "store_helpers" / "store_proc.py"
ROOT = Path(__file__).parent.parent


def lmdesk(data: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--data-dir", str(data), *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def err_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def tree_chat(data: Path) -> dict[str, str]:
    """A conversation whose reply was regenerated once, and a second one."""
    with Store.open(data) as s:
        c = s.create_conversation("Cats and dogs")
        u = s.append_message(c.id, "user", "Tell me about cats")
        first = s.append_message(c.id, "assistant", "Cats are small.")
        second = s.append_message(c.id, "assistant", "Cats purr.", parent=u.id)
        other = s.create_conversation("Another one")
        s.append_message(other.id, "user", "hello")
        MemoryStore(s).add("I live in Porto")
    return {"cid": c.id, "first": first.id, "second": second.id, "other": other.id}


def test_a_damaged_index_is_said_once_and_loses_no_conversation(
        data: Path, tree_chat: dict[str, str]) -> None:
    conv_files = {p.name: p.read_bytes() for p in (data / "conversations").iterdir()}
    (data / "index.json").write_bytes(b'{"conversations": {"1": {"id": "c')
    (data / "index.json.bak").write_bytes(b"")
    first = lmdesk(data, "memory", "list")  # the command that met the damage, in the issue
    assert first.returncode == 0, first.stderr
    assert "I live in Porto" in first.stdout
    (line,) = err_lines(first)
    assert line.startswith("lmdesk: ") and "index.json could not be read" in line
    assert "the list of 2 conversations was rebuilt from their files" in line
    listed = lmdesk(data, "chats", "list")
    assert listed.returncode == 0 and err_lines(listed) == []  # said once
    assert "Cats and dogs" in listed.stdout and "Another one" in listed.stdout
    assert {p.name: p.read_bytes() for p in (data / "conversations").iterdir()} == conv_files
    assert len(list(data.glob("index.json*.corrupt-*"))) == 2  # set aside, not deleted


def test_show_the_branch_the_tree_and_as_json(data: Path, tree_chat: dict[str, str]) -> None:
    cid = tree_chat["cid"]
    shown = lmdesk(data, "chats", "show", cid[:12])  # the start of an id is enough
    assert shown.returncode == 0, shown.stderr
    assert "# Cats and dogs" in shown.stdout and "assistant (2/2):\nCats purr." in shown.stdout
    assert "Cats are small." not in shown.stdout
    tree = lmdesk(data, "chats", "show", cid, "--tree")
    lines = tree.stdout.splitlines()
    small = next(line for line in lines if "Cats are small." in line)
    purr = next(line for line in lines if "Cats purr." in line)
    assert purr.startswith("*") and not small.startswith("*") and "[1/2]" in small
    doc = json.loads(lmdesk(data, "chats", "show", cid, "--json", "--tree").stdout)
    assert len(doc["messages"]) == 3 and doc["shown"][-1] == tree_chat["second"]
    listed = json.loads(lmdesk(data, "chats", "list", "--json").stdout)
    assert [c["title"] for c in listed] == ["Another one", "Cats and dogs"]
    missing = lmdesk(data, "chats", "show", "nope")
    assert missing.returncode == 1
    assert err_lines(missing) == ["lmdesk: error: no conversation 'nope' (see `lmdesk chats "
                                  "list`)"]


def test_export_import_round_trip_and_remove(data: Path, tmp_path: Path,
                                             tree_chat: dict[str, str]) -> None:
    cid = tree_chat["cid"]
    md = lmdesk(data, "chats", "export", cid, "--format", "md")
    assert md.returncode == 0 and "Cats purr." in md.stdout and "Cats are small" not in md.stdout
    out = tmp_path / "chat.json"
    saved = lmdesk(data, "chats", "export", cid, "--format", "json", "-o", str(out))
    assert saved.returncode == 0 and str(out) in saved.stdout
    assert json.loads(out.read_text())["version"] == 2
    imported = lmdesk(data, "chats", "import", str(out), "--json")
    assert imported.returncode == 0, imported.stderr
    new = json.loads(imported.stdout)
    assert new["title"] == "Cats and dogs" and new["message_count"] == 3
    with Store.open(data) as s:
        assert [m.content for m in s.branch(new["id"])] == ["Tell me about cats", "Cats purr."]
        assert len(s.messages(new["id"])) == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    refused = lmdesk(data, "chats", "import", str(bad))
    assert refused.returncode == 1 and len(err_lines(refused)) == 1
    assert "not an lmdesk conversation export" in refused.stderr
    removed = lmdesk(data, "chats", "rm", new["id"])
    assert removed.returncode == 0 and "deleted" in removed.stdout
    with Store.open(data) as s:
        assert {m.id for m in s.list_conversations()} == {cid, tree_chat["other"]}


@pytest.fixture
def app_holds(data: Path, tree_chat: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, str(HELPER), "hold", str(data)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready False"
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


def test_read_only_while_another_lmdesk_holds_the_folder(
        data: Path, tree_chat: dict[str, str], app_holds: subprocess.Popen[str]) -> None:
    listed = lmdesk(data, "chats", "list")
    assert listed.returncode == 0 and "Cats and dogs" in listed.stdout
    (line,) = err_lines(listed)
    assert f"another lmdesk is running (pid {app_holds.pid}); opened read-only" in line
    for args in (("chats", "rm", tree_chat["cid"]), ("ask", "--chat", tree_chat["cid"], "hi")):
        refused = lmdesk(data, *args)
        assert refused.returncode == 1
        (line,) = err_lines(refused)
        assert line.startswith("lmdesk: error: cannot save: this lmdesk is read-only because "
                               f"another lmdesk is running (pid {app_holds.pid})"), line
    with Store.open(data, read_only=True) as s:
        assert len(s.messages(tree_chat["cid"])) == 3


def test_ask_chat_adds_a_turn_then_continues_the_cut_reply(data: Path,
                                                         tree_chat: dict[str, str]) -> None:
    cid = tree_chat["cid"]
    greedy = ("--temperature", "0", "--top-k", "1", "--seed", "1")
    asked = lmdesk(data, "ask", "--chat", cid, "--json", "--max-tokens", "6", *greedy,
                   "Explain what a CPU does.")
    assert asked.returncode == 0, asked.stderr
    turn = json.loads(asked.stdout)
    assert turn["conversation"] == cid and turn["stats"]["stop_reason"] == "length"
    with Store.open(data) as s:
        branch = s.branch(cid)
        assert [m.content for m in branch[:3]] == [
            "Tell me about cats", "Cats purr.", "Explain what a CPU does."]
        assert branch[2].parent == tree_chat["second"]  # it follows the branch shown
        reply = branch[3]
        assert (reply.id, reply.content, reply.status) == (turn["reply_id"], turn["reply"],
                                                           "done")
        assert reply.can_continue
    # the history went into the prompt: more tokens than the question alone
    alone = lmdesk(data, "ask", "--json", "--max-tokens", "1", "--no-memory", *greedy,
                   "Explain what a CPU does.")
    assert turn["stats"]["prompt_tokens"] > json.loads(alone.stdout)["stats"]["prompt_tokens"]
    more = lmdesk(data, "ask", "--chat", cid, "--continue", "--json", "--max-tokens", "8",
                  *greedy)
    assert more.returncode == 0, more.stderr
    went_on = json.loads(more.stdout)
    assert went_on["reply_id"] == turn["reply_id"] and went_on["reply"]
    with Store.open(data) as s:
        branch = s.branch(cid)
        assert len(branch) == 4  # the same message, no new prompt
        assert branch[3].content == turn["reply"] + went_on["reply"]
        assert branch[3].stats is not None and branch[3].stats["generated_tokens"] > 0
    # a reply that ended by itself has nothing to continue; --continue takes no prompt
    with Store.open(data) as s:
        s.update_message(cid, turn["reply_id"], stats={"stop_reason": "stop"})
    done = lmdesk(data, "ask", "--chat", cid, "--continue")
    assert done.returncode == 1 and "nothing to continue" in done.stderr
    assert len(err_lines(done)) == 1
    extra = lmdesk(data, "ask", "--chat", cid, "--continue", "more please")
    assert extra.returncode == 1 and "give no prompt" in extra.stderr
