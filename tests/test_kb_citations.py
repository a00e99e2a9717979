"""Knowledge-base citations (issue 21.11): an answer lists only the sources it drew on, and
a cited file that changed since indexing says so."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import chat, make_app, pilot_test, rendered, send, wait_for
from tests.test_app_knowledge import _docs
from tui.app.screens.knowledge import SourceScreen
from tui.engine.scripted import ScriptedEngine
from tui.kb import KBLibrary

SOURCES = [{"n": 1, "path": "a.md"}, {"n": 2, "path": "b.md"}]
PASSAGES = ["[1] a.md:1-2\nThe Zorblat reactor is cooled by liquid gallium.",
            "[2] b.md:1\nTides come twice a day at the harbour."]


def test_answer_sources() -> None:
    from tui.kb.prompt import answer_sources

    # cited: exactly those
    assert answer_sources("Gallium [2], see [9].", SOURCES, PASSAGES) == [SOURCES[1]]
    # not cited: the passages it shares words with
    assert answer_sources("The Zorblat reactor uses liquid gallium.", SOURCES,
                          PASSAGES) == [SOURCES[0]]
    # unrelated to the documents: none (one shared word is not enough)
    assert answer_sources("Paris is the capital of France.", SOURCES, PASSAGES) == []
    assert answer_sources("A day in Paris.", SOURCES, PASSAGES) == []


async def _attached_app(tmp_path: Path, reply: str):  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path)
    app = make_app(tmp_path, engine=ScriptedEngine(reply))
    KBLibrary(app.paths.data_dir).create("docs", [str(docs)]).reindex()
    return app, docs


@pilot_test
async def test_an_answer_unrelated_to_the_documents_lists_no_source(tmp_path: Path) -> None:
    app, _docs_dir = await _attached_app(tmp_path, "Paris is the capital of France.")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        meta = chat(app).meta
        new = app.store.update_options(meta.id, knowledge_bases=("docs",))
        app.conversation_options_changed(meta.id, new.options)
        await send(pilot, "How many ships does the lighthouse keeper count?")
        await wait_for(pilot, lambda: chat(app).pane.job is None, timeout=30)
        await pilot.pause(0.1)
        stored = app.store.messages(meta.id)[-1]
        assert stored.stats is not None and "sources" not in stored.stats
        assert "Sources:" not in rendered(chat(app).pane.log_view.views()[-1], 200)


@pilot_test
async def test_a_cited_file_changed_since_indexing_says_so(tmp_path: Path) -> None:
    app, docs = await _attached_app(tmp_path, "The keeper counts 17 ships [1].")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        meta = chat(app).meta
        new = app.store.update_options(meta.id, knowledge_bases=("docs",))
        app.conversation_options_changed(meta.id, new.options)
        await send(pilot, "How many ships does the lighthouse keeper count on line 17?")
        await wait_for(pilot, lambda: chat(app).pane.job is None, timeout=30)
        stored = app.store.messages(meta.id)[-1]
        assert stored.stats is not None and len(stored.stats["sources"]) == 1
        await pilot.press("alt+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        await wait_for(pilot, lambda: screen.text != "Reading…")
        assert "changed since" not in screen.text  # as indexed
        await pilot.press("escape")
        notes = docs / "notes.md"
        notes.write_text("A new first line.\n" + notes.read_text(encoding="utf-8"),
                         encoding="utf-8")
        await wait_for(pilot, lambda: not isinstance(app.screen, SourceScreen))
        await pilot.press("alt+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        await wait_for(pilot, lambda: screen.text != "Reading…")
        assert "notes.md changed since it was indexed" in screen.text
