"""Leaving a conversation while its reply streams: no crash, and the reply kept where it belongs.

Each way to leave (new, the list, a search result, delete, import) is tried while a slow
scripted reply streams; the partial reply must end up saved in its own conversation, marked
stopped, holding every token the user saw (not just the first one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.app_fixtures import (
    chat,
    export_data,
    make_app,
    pilot_test,
    seed,
    wait_for,
)
from tui.app.app import LmdeskApp
from tui.engine.scripted import ScriptedEngine

STORY = " ".join(f"dragon{i}" for i in range(2000))


async def _start_streaming(pilot: Any, app: LmdeskApp) -> tuple[str, int]:
    """Send a prompt and wait until a good part of the reply is on screen."""
    pane = chat(app).pane
    pane.prompt.focus()
    pane.prompt.load_text("Write a very long story about a dragon and a knight.")
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.job is not None and pane.job.tokens_shown > 20)
    job = pane.job
    assert job is not None
    # a flush is certainly due soon after: leaving must not race it
    return job.conversation_id, job.tokens_shown


async def _settled(pilot: Any, app: LmdeskApp, cid: str) -> Any:
    """Wait until the stopped reply is saved in ``cid``; return it."""

    def saved() -> bool:
        msgs = app.store.messages(cid)
        return len(msgs) == 2 and msgs[1].status == "stopped"

    try:
        await wait_for(pilot, lambda: not chat(app).pane._leaving and saved(), timeout=30)
    except AssertionError:
        state = [(m.role, m.status, len(m.content)) for m in app.store.messages(cid)]
        raise AssertionError(f"the reply was not saved as stopped: {state}") from None
    await pilot.pause(0.2)
    return app.store.messages(cid)[1]


def _check_kept(reply: Any, shown: int) -> None:
    assert reply.role == "assistant"
    assert reply.status == "stopped"
    assert STORY.startswith(reply.content)
    assert len(reply.content.split()) >= shown, "every token the user saw is kept"
    assert len(reply.content) < len(STORY)


def _app(tmp_path: Path) -> LmdeskApp:
    return make_app(tmp_path, engine=ScriptedEngine(STORY, delay_s=0.004))


@pilot_test
async def test_new_conversation_while_streaming(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        cid, shown = await _start_streaming(pilot, app)
        await pilot.press("ctrl+n")
        reply = await _settled(pilot, app, cid)
        _check_kept(reply, shown)
        assert chat(app).meta.id != cid
        assert chat(app).pane.job is None
        assert app.is_running


@pilot_test
async def test_pick_another_conversation_from_the_list(tmp_path: Path) -> None:
    app = _app(tmp_path)
    other = seed(app.store, "Older chat", 2)
    async with app.run_test(size=(120, 40)) as pilot:
        await chat(app).new_conversation()
        cid, shown = await _start_streaming(pilot, app)
        await chat(app).open_conversation(other)  # what selecting it in the list does
        reply = await _settled(pilot, app, cid)
        _check_kept(reply, shown)
        assert chat(app).meta.id == other
        # the other conversation is untouched
        assert [m.content for m in app.store.messages(other)] == [
            "Older chat question 0", "Older chat answer 0",
            "Older chat question 1", "Older chat answer 1",
        ]
        # coming back shows the saved reply with its stopped mark
        await chat(app).open_conversation(cid)
        await pilot.pause()
        shown_text = chat(app).pane.log_view.views()[-1].message.content
        assert shown_text == reply.content


@pilot_test
async def test_select_in_the_list_with_keys(tmp_path: Path) -> None:
    app = _app(tmp_path)
    seed(app.store, "Older chat", 1)
    async with app.run_test(size=(120, 40)) as pilot:
        await chat(app).new_conversation()
        cid, shown = await _start_streaming(pilot, app)
        listing = chat(app).conversations
        listing.focus()
        await pilot.pause()
        index = next(i for i, o in enumerate(listing._options) if o.id != cid)
        listing.highlighted = index
        await pilot.press("enter")
        reply = await _settled(pilot, app, cid)
        _check_kept(reply, shown)
        assert chat(app).meta.id != cid


@pilot_test
async def test_open_a_search_result(tmp_path: Path) -> None:
    app = _app(tmp_path)
    other = seed(app.store, "Findable", 1)
    async with app.run_test(size=(120, 40)) as pilot:
        await chat(app).new_conversation()
        cid, shown = await _start_streaming(pilot, app)
        hit = next(h for h in app.store.search("Findable") if h.conversation_id == other)
        await chat(app).open_conversation(hit.conversation_id, around=hit.message_id)
        reply = await _settled(pilot, app, cid)
        _check_kept(reply, shown)
        assert chat(app).meta.id == other


@pilot_test
async def test_delete_the_conversation_while_streaming(tmp_path: Path) -> None:
    app = _app(tmp_path)
    seed(app.store, "Stays", 1)
    async with app.run_test(size=(120, 40)) as pilot:
        await chat(app).new_conversation()
        cid, _shown = await _start_streaming(pilot, app)
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: chat(app).meta is not None and chat(app).meta.id != cid)
        await wait_for(pilot, lambda: not chat(app).pane._leaving)
        await pilot.pause(0.2)
        assert cid not in [m.id for m in app.store.list_conversations()]
        assert not (app.store.data_dir / "conversations" / f"{cid}.json").exists()
        assert app.is_running
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors == []


@pilot_test
async def test_import_while_streaming(tmp_path: Path) -> None:
    app = _app(tmp_path)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_data("Imported chat", 1)))
    async with app.run_test(size=(120, 40)) as pilot:
        cid, shown = await _start_streaming(pilot, app)
        meta = await chat(app).import_from(path)
        assert meta is not None
        reply = await _settled(pilot, app, cid)
        _check_kept(reply, shown)
        assert chat(app).meta.id == meta.id
        assert [m.role for m in app.store.messages(meta.id)] == ["user", "assistant"]


@pilot_test
async def test_quit_after_leaving_keeps_the_reply(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        cid, shown = await _start_streaming(pilot, app)
        await pilot.press("ctrl+n")
        await _settled(pilot, app, cid)
    reopened = app.store.messages(cid)
    assert reopened[1].status == "stopped"
    assert len(reopened[1].content.split()) >= shown
