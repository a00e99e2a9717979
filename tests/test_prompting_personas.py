"""Personas: CRUD, sampling presets, per-conversation choice, JSONL export of examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.engine.protocol import ChatMessage, SamplingParams
from tui.prompting.personas import (
    BUILTIN_PERSONAS,
    Example,
    Persona,
    PersonaError,
    PersonaLibrary,
    PersonaNotFound,
    examples_as_messages,
    examples_jsonl,
    export_examples,
    set_conversation_persona,
)
from tui.store import ConversationOptions, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as s:
        yield s


def lawyer() -> Persona:
    return Persona(
        id="lawyer", name="Lawyer", system_prompt="You answer as a labour lawyer.",
        tone="formal", sampling={"temperature": 0.3, "max_tokens": 300},
        examples=(Example("Can I be fired while on sick leave?",
                          "Not for being ill. Dismissal during sick leave must have another "
                          "lawful cause."),
                  Example("How long is the trial period?", "Usually up to six months.")),
    )


def test_builtins_are_valid_and_varied() -> None:
    ids = [p.id for p in BUILTIN_PERSONAS]
    assert len(ids) == len(set(ids)) >= 5
    for p in BUILTIN_PERSONAS:
        p.validate()
    tones = {p.tone for p in BUILTIN_PERSONAS}
    assert {"technical", "creative", "formal", "informal"} <= tones


def test_crud_and_read_only_builtins(store: Store) -> None:
    lib = PersonaLibrary(store)
    created = lib.create(lawyer())
    assert created.created > 0 and not created.builtin
    assert lib.get("lawyer").examples == lawyer().examples
    with pytest.raises(PersonaError, match="already exists"):
        lib.create(lawyer())
    lib.update("lawyer", tone="plain and kind", sampling={"temperature": 0.4})
    assert lib.get("lawyer").tone_instruction() == "Tone: plain and kind."
    lib.add_example("lawyer", "q", "a")
    assert len(lib.get("lawyer").examples) == 3
    copy = lib.duplicate("lawyer")
    assert copy.id == "lawyer-copy" and copy.name == "Lawyer (copy)"
    assert lib.duplicate("technical").id == "technical-copy"
    with pytest.raises(PersonaError, match="built in"):
        lib.update("technical", tone="creative")
    with pytest.raises(PersonaError, match="built in"):
        lib.delete("technical")
    lib.delete("lawyer")
    with pytest.raises(PersonaNotFound):
        lib.get("lawyer")
    assert [p.id for p in lib.list_personas()][-2:] == ["lawyer-copy", "technical-copy"]


def test_sampling_preset_applies_over_params() -> None:
    base = SamplingParams(temperature=0.7, top_k=40, max_tokens=1024)
    out = lawyer().apply_sampling(base)
    assert (out.temperature, out.top_k, out.max_tokens) == (0.3, 40, 300)
    with pytest.raises(PersonaError, match="unknown sampling setting 'temp'"):
        Persona(id="x", name="X", sampling={"temp": 1.0}).validate()
    with pytest.raises(PersonaError, match="temperature"):
        Persona(id="x", name="X", sampling={"temperature": 9.0}).validate()


def test_system_block_is_deterministic() -> None:
    p = lawyer()
    assert p.system_block() == p.system_block() == (
        "You answer as a labour lawyer.\n\nWrite in a formal, courteous register.")
    assert examples_as_messages(p.examples)[:2] == (
        ChatMessage("user", "Can I be fired while on sick leave?"),
        ChatMessage("assistant", p.examples[0].response))


def test_chosen_per_conversation(store: Store) -> None:
    lib = PersonaLibrary(store)
    meta = store.create_conversation("c")
    store.update_options(meta.id, memory=False)
    assert lib.for_conversation(store.get_conversation(meta.id)) is None
    meta = set_conversation_persona(store, meta.id, "teacher")
    assert meta.options == ConversationOptions(memory=False, persona="teacher")
    persona = lib.for_conversation(meta)
    assert persona is not None and persona.id == "teacher"
    meta = set_conversation_persona(store, meta.id, None)
    assert meta.options == ConversationOptions(memory=False)


def test_examples_export_as_chat_jsonl(tmp_path: Path) -> None:
    p = lawyer()
    lines = examples_jsonl(p).splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == p.system_block()
    assert first["messages"][1]["content"] == p.examples[0].instruction
    assert first["messages"][2]["content"] == p.examples[0].response
    no_system = json.loads(examples_jsonl(p, include_system=False).splitlines()[1])
    assert [m["role"] for m in no_system["messages"]] == ["user", "assistant"]
    path = tmp_path / "lawyer.jsonl"
    assert export_examples(p, path) == 2
    assert path.read_text(encoding="utf-8") == examples_jsonl(p)
