"""Typed conversation options and message parts, and the upgrade of a 0.1 data folder."""

from __future__ import annotations

import json
from pathlib import Path

from tui.store import (
    ConversationOptions,
    EndpointModel,
    LocalModel,
    ProfileModel,
    ReasoningPart,
    Store,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    schema,
)
from tui.store.options import options_from_doc, options_to_doc
from tui.store.parts import parts_from_docs, parts_to_docs


def _write_v1_folder(data: Path) -> None:
    """Exactly what lmdesk 0.1 wrote: schema 1, an untyped ``extra`` bag per conversation."""
    (data / "conversations").mkdir(parents=True)
    rows = {
        "1": {"id": "cplain", "title": "Plain", "created": 10.0, "updated": 11.0,
              "pinned": False, "system_prompt": "", "model": "smollm2-135m",
              "message_count": 2, "sig": None,
              "extra": {"model_path": "/m/smol.gguf", "persona": "teacher", "memory": False,
                        "context_policy": "summarize", "kbs": ["docs", "notes"],
                        "something_else": 7}},
        "2": {"id": "cprof", "title": "Profiled", "created": 12.0, "updated": 12.0,
              "pinned": True, "system_prompt": "be brief", "model": "smollm2-135m",
              "message_count": 0, "sig": None,
              "extra": {"model_path": "/m/smol.gguf", "profile": "p123"}},
        "3": {"id": "cremote", "title": "Remote", "created": 13.0, "updated": 13.0,
              "pinned": False, "system_prompt": "", "model": "remote-bot",
              "message_count": 0, "sig": None,
              "extra": {"endpoint": {"id": "e1", "model": "remote-bot", "name": "lab"}}},
    }
    index = {"meta": {"1": {"schema": 1, "created": 1.0}}, "conversations": rows,
             "settings": {}}
    (data / "index.json").write_text(json.dumps(index))
    messages = {"messages": {
        "1": {"id": "m1", "role": "user", "content": "hi", "created": 10.5, "model": None,
              "stats": None, "status": "done", "error": None},
        "2": {"id": "m2", "role": "assistant", "content": "hello", "created": 10.6,
              "model": "smollm2-135m", "stats": {"generated_tokens": 2}, "status": "done",
              "error": None},
    }}
    (data / "conversations" / "cplain.json").write_text(json.dumps(messages))


def test_a_0_1_folder_is_upgraded_to_typed_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_v1_folder(data)
    with Store.open(data) as store:
        metas = {m.id: m for m in store.list_conversations()}
        assert metas["cplain"].options == ConversationOptions(
            model=LocalModel("/m/smol.gguf", "smollm2-135m"), persona="teacher", memory=False,
            context_policy="summarize", knowledge_bases=("docs", "notes"))
        assert metas["cprof"].options == ConversationOptions(
            model=ProfileModel("p123", "smollm2-135m", "/m/smol.gguf"))
        assert metas["cremote"].options.model == EndpointModel("e1", "remote-bot", "lab")
        # old messages read as text only
        msgs = store.messages("cplain")
        assert [(m.content, m.parts, m.reasoning) for m in msgs] == [
            ("hi", (), ""), ("hello", (), "")]
    index = json.loads((data / "index.json").read_text())
    assert index["meta"]["1"]["schema"] == schema.current_version()
    row = next(r for r in index["conversations"].values() if r["id"] == "cplain")
    assert "extra" not in row
    assert row["legacy_extra"] == {"something_else": 7}  # nothing is thrown away
    assert (data / "index.json.schema-v1").exists()


def test_options_round_trip_and_bad_values_are_dropped_with_a_line() -> None:
    options = ConversationOptions(model=EndpointModel("e", "m", "lab"), persona="p",
                                  memory=False, knowledge_bases=("a",), reasoning_budget=0,
                                  tools=("calc",))
    assert options_from_doc(options_to_doc(options)) == (options, [])
    assert options_to_doc(ConversationOptions()) == {}
    got, problems = options_from_doc({"memory": "yes", "context_policy": "magic",
                                      "model": {"kind": "alien"}, "reasoning_budget": -5})
    assert got == ConversationOptions()
    assert len(problems) == 4


def test_update_options_keeps_the_others(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("c")
        store.update_options(meta.id, persona="teacher")
        store.update_options(meta.id, knowledge_bases=("docs",))
        assert store.get_conversation(meta.id).options == ConversationOptions(
            persona="teacher", knowledge_bases=("docs",))


def test_parts_are_stored_exported_and_imported(tmp_path: Path) -> None:
    parts = (ReasoningPart("Let me think.\nTwo steps.", 12, 0.5), TextPart("Four."),
             ToolCallPart("c1", "calc", '{"x": 1}'), ToolResultPart("c1", "calc", "1"))
    assert parts_from_docs(parts_to_docs(parts)) == parts
    assert parts_from_docs([{"type": "wat"}, "junk"]) == ()  # skipped, never fatal
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("Thinking")
        store.append_message(meta.id, "user", "2+2?")
        msg = store.append_message(meta.id, "assistant", "", status="partial",
                                   parts=parts[:1])
        store.update_message(meta.id, msg.id, content="Four.", status="done", parts=parts)
        got = store.messages(meta.id)[1]
        assert got.parts == parts and got.reasoning == "Let me think.\nTwo steps."
        assert got.content == "Four."
        md = store.export_markdown(meta.id)
        assert "<summary>Reasoning (12 tokens, 0.5 s)</summary>" in md
        assert md.index("Let me think.") < md.index("Four.")
        copy = store.import_json(json.loads(json.dumps(store.export_json(meta.id))))
        assert store.messages(copy.id)[1].parts == parts
        # search finds reasoning only when asked
        assert store.search("Two steps") == []
        hits = store.search("Two steps", reasoning=True)
        assert [h.message_id for h in hits if h.conversation_id == meta.id] == [msg.id]
        assert hits[0].snippet.startswith("(reasoning)")


def test_a_stopped_reply_leaves_no_open_fence_in_markdown(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("Code")
        store.append_message(meta.id, "user", "code please")
        store.append_message(meta.id, "assistant", "Here:\n```python\nprint(1", status="stopped")
        md = store.export_markdown(meta.id)
        assert md.count("```") == 2
        assert md.index("_(stopped)_") > md.rindex("```")


def test_one_reasoning_token_is_one_token_in_the_export(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("Short thought")
        store.append_message(meta.id, "user", "Hi")
        store.append_message(meta.id, "assistant", "Hello.", status="done",
                             parts=(ReasoningPart("Hm.", 1, 0.1), TextPart("Hello.")))
        assert "<summary>Reasoning (1 token, 0.1 s)</summary>" in store.export_markdown(meta.id)
