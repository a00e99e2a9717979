"""Pilot tests of knowledge bases in the app: create, index, attach, sources under a reply."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.app_fixtures import chat, make_app, pilot_test, rendered, send, wait_for
from tui.app.screens.knowledge import KnowledgeScreen, SourceScreen, read_passage
from tui.kb import KBLibrary


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = [f"line {i}: the lighthouse keeper counts {i} ships" for i in range(1, 41)]
    (docs / "notes.md").write_text("# Notes\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (docs / "more.txt").write_text("Tides come twice a day.\n" * 5, encoding="utf-8")
    return docs


@pilot_test
async def test_create_index_and_attach_a_kb(tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await send(pilot, "hello")
        await pilot.press("alt+k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnowledgeScreen))
        screen = app.screen
        assert isinstance(screen, KnowledgeScreen)
        await pilot.press(*"docs")  # the name box has the focus
        await pilot.press("enter")
        paths = screen.query_one("#kb-paths", Input)
        assert paths.has_focus
        paths.value = str(docs)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.last_report is not None, timeout=30)
        assert screen.last_report is not None and screen.last_report.files_total == 2
        assert "docs:" in screen.status_text and "chunks" in screen.status_text
        await wait_for(pilot, lambda: [i.name for i in screen.infos] == ["docs"])
        # created, indexed and attached to the open conversation (extra kept whole)
        cid = chat(app).meta.id
        assert app.store.get_conversation(cid).options.knowledge_bases == ("docs",)
        assert chat(app).meta.options.knowledge_bases == ("docs",)
        # detach, attach again with "a"
        screen.query_one("DataTable").focus()
        await pilot.press("a")
        assert app.store.get_conversation(cid).options.knowledge_bases == ()
        await pilot.press("a")
        assert app.store.get_conversation(cid).options.knowledge_bases == ("docs",)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, KnowledgeScreen))
    assert KBLibrary(app.paths.data_dir).open("docs").info().chunks > 0


@pilot_test
async def test_sources_under_a_reply_and_open_a_passage(tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    notes = str(docs / "notes.md")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "how many ships?")
        cid = chat(app).meta.id
        reply = app.store.messages(cid)[-1]
        # what the retrieval wiring stores in the reply's stats
        sources = [
            {"n": 1, "path": notes, "start": 12, "end": 14, "label": f"{notes}:12-14"},
            {"n": 2, "path": str(docs / "more.txt"), "start": 1, "end": 2,
             "label": "more.txt:1-2"},
        ]
        app.store.update_message(cid, reply.id, stats={**(reply.stats or {}),
                                                       "sources": sources})
        await app.open_conversation(cid)
        await pilot.pause(0.1)
        view = chat(app).pane.log_view.views()[-1]
        text = rendered(view, 200)
        assert f"Sources: [1] {notes}:12-14  [2] more.txt:1-2" in text
        assert "tok/s" in text
        await pilot.press("alt+o")  # two sources: asks which
        await pilot.pause(0.1)
        await pilot.press("1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        await wait_for(pilot, lambda: screen.text != "Reading…")
        # the file's lines around 12..14, numbered, the cited ones marked
        assert "12 ▌ line 10: the lighthouse" in screen.text
        assert " 9   line 7:" in screen.text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SourceScreen))


def test_read_passage_window(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("".join(f"{i}\n" for i in range(1, 101)))
    first, lines = read_passage(str(path), 50, 52, context=2)
    assert first == 48 and lines == ["48", "49", "50", "51", "52", "53", "54"]


@pilot_test
async def test_an_attached_kb_reaches_the_prompt_and_its_sources_the_reply(
    tmp_path: Path,
) -> None:
    """The whole path: attached KB -> retrieval in prompt building -> the engine's system
    message -> sources stored with the reply and shown under it."""
    from tui.engine.scripted import ScriptedEngine

    docs = _docs(tmp_path)
    engine = ScriptedEngine("The keeper counted 17 ships [1].")
    app = make_app(tmp_path, engine=engine)
    KBLibrary(app.paths.data_dir).create("docs", [str(docs)]).reindex()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        meta = chat(app).meta
        new = app.store.update_options(meta.id, knowledge_bases=("docs",))
        app.conversation_options_changed(meta.id, new.options)
        await send(pilot, "How many ships does the lighthouse keeper count on line 17?")
        await wait_for(pilot, lambda: chat(app).pane.job is None, timeout=30)
        await pilot.pause(0.1)
        view = chat(app).pane.log_view.views()[-1]
        assert "Sources: [1] " in rendered(view, 200)
        system = engine.requests[-1][0]
        assert system.role == "system" and "[1]" in system.content
        assert "line 17: the lighthouse keeper counts 17 ships" in system.content
        stored = app.store.messages(meta.id)[-1]
        assert stored.role == "assistant" and stored.stats is not None
        assert stored.stats["sources"][0]["path"].endswith("notes.md")
