"""Memory: the store, the budgeted block for the system prompt, proposals from a chat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tui.engine.protocol import ChatMessage
from tui.engine.scripted import ScriptedEngine
from tui.prompting.memory import (
    HEADER,
    Memory,
    MemoryStore,
    MemoryStoreError,
    memory_block,
    memory_on,
    parse_proposals,
    propose_memories,
    set_conversation_memory,
)
from tui.store import ConversationOptions, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as s:
        yield s


def mem(mid: str, text: str, created: float, **kw: Any) -> Memory:
    return Memory(mid, text, created=created, **kw)


def test_add_list_disable_remove(store: Store) -> None:
    ms = MemoryStore(store)
    a = ms.add("  I live in   Montevideo ")
    b = ms.add("I prefer metric units", important=True)
    assert a.text == "I live in Montevideo" and a.enabled and a.id.startswith("m")
    assert [m.id for m in ms.list_memories()] == [a.id, b.id]
    ms.set_enabled(a.id, False)
    assert [m.id for m in ms.list_memories(enabled_only=True)] == [b.id]
    assert ms.get(b.id[:5]).id == b.id or len({a.id[:5], b.id[:5]}) == 1
    ms.update(b.id, text="I use metric units")
    assert ms.get(b.id).text == "I use metric units"
    assert ms.remove(a.id).id == a.id
    with pytest.raises(MemoryStoreError, match="no memory"):
        ms.get(a.id)
    with pytest.raises(MemoryStoreError, match="empty"):
        ms.add("   ")


def test_memories_persist(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as s:
        MemoryStore(s).add("my cat is called Mora")
    with Store.open(tmp_path / "d") as s:
        assert [m.text for m in MemoryStore(s).list_memories()] == ["my cat is called Mora"]


def test_on_or_off_per_conversation(store: Store) -> None:
    meta = store.create_conversation("c")
    assert memory_on(meta)
    meta = set_conversation_memory(store, meta.id, False)
    assert not memory_on(meta) and meta.options == ConversationOptions(memory=False)
    assert memory_on(set_conversation_memory(store, meta.id, True))


def test_block_is_deterministic_oldest_first() -> None:
    engine = ScriptedEngine()
    memories = [mem("b", "second fact", 2.0), mem("a", "first fact", 1.0),
                mem("c", "disabled fact", 3.0, enabled=False)]
    block = memory_block(engine, memories, budget=100)
    assert block.text == f"{HEADER}\n- first fact\n- second fact"
    assert block.included == ("a", "b") and block.notes == ()
    assert memory_block(engine, list(reversed(memories)), budget=100) == block
    assert memory_block(engine, [], budget=100).text == ""


def test_budget_keeps_important_then_recent_and_says_so() -> None:
    engine = ScriptedEngine()  # counts words
    header = len(HEADER.split())
    memories = [mem("old", "one two three", 1.0), mem("new", "four five six", 3.0),
                mem("vip", "seven eight nine", 0.5, important=True)]
    block = memory_block(engine, memories, budget=header + 8)  # room for two 4-word lines
    assert block.included == ("vip", "new")
    assert block.left_out == ("old",)
    assert block.tokens <= header + 8
    assert any("memory over budget" in n and "1 of 3" in n for n in block.notes)


def test_memory_larger_than_budget_is_reported_not_truncated() -> None:
    engine = ScriptedEngine()
    huge = mem("huge", " ".join(["word"] * 50), 2.0)
    block = memory_block(engine, [huge, mem("small", "tiny fact", 1.0)], budget=30)
    assert block.included == ("small",) and "word" not in block.text
    assert any("memory huge is 51 tokens" in n and "budget of 30" in n for n in block.notes)
    assert block.left_out == ("huge",)


def test_parse_proposals_is_robust() -> None:
    reply = """Here are the facts:
- The user's name is Ana.
* Ana works as a nurse
1. She prefers short answers.
2) the user's name is ana
•  Lives in Rosario
NONE

**Facts:**
- ok
"""
    assert parse_proposals(reply, existing=["Lives in Rosario."]) == [
        "The user's name is Ana.", "Ana works as a nurse", "She prefers short answers."]
    assert parse_proposals("NONE") == [] and parse_proposals("") == []


def test_propose_memories_prompts_the_model_and_parses() -> None:
    engine = ScriptedEngine("- The user is called Bo.\n- Bo codes in Rust.\n")
    chat = [ChatMessage("user", "Hi, I'm Bo and I write Rust."),
            ChatMessage("assistant", "Nice to meet you, Bo!")]
    assert propose_memories(engine, chat) == ["The user is called Bo.", "Bo codes in Rust."]
    sent = engine.requests[-1]
    assert sent[0].role == "system" and "User: Hi, I'm Bo" in sent[1].content
    assert "one short fact per line" in sent[1].content
    assert propose_memories(engine, []) == []


@pytest.mark.model
def test_propose_memories_with_the_real_model(smollm_engine: Any) -> None:
    chat = [ChatMessage("user", "My name is Ana and I am a nurse in Rosario. I like short "
                                "answers."),
            ChatMessage("assistant", "Nice to meet you, Ana.")]
    found = propose_memories(smollm_engine, chat, max_tokens=60)
    assert isinstance(found, list)
    for fact in found:
        assert fact.strip() == fact and fact and not fact.startswith(("-", "*"))
