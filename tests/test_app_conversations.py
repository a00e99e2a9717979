"""Pilot tests of conversation management: sidebar, search, export/import, system prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app_fixtures import (
    chat,
    make_app,
    make_paths,
    notifications,
    pilot_test,
    seed,
    send,
    wait_for,
    wait_idle,
)
from tui.app.screens.confirm import ConfirmScreen
from tui.app.screens.search import SearchScreen
from tui.app.screens.system_prompt import SystemPromptScreen
from tui.app.screens.text_input import TextInputScreen
from tui.app.widgets.chat_log import PAGE
from tui.engine.scripted import ScriptedEngine
from tui.store import Store


@pilot_test
async def test_opens_last_conversation(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    seed(store, "Older", 1)
    newest = seed(store, "Newest", 2)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert chat(app).meta.id == newest
        assert len(chat(app).pane.log_view.views()) == 4
        assert "Newest" in app.sub_title


@pilot_test
async def test_new_switch_and_pin(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        await send(pilot, "first conversation")
        first = chat(app).meta.id
        await pilot.press("ctrl+n")
        await pilot.pause()
        second = chat(app).meta.id
        assert second != first
        assert chat(app).pane.log_view.views() == []
        # ctrl+n on an empty conversation does not pile up empty ones
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert chat(app).meta.id == second
        await send(pilot, "second conversation")
        ids = [m.id for m in app.store.list_conversations()]
        assert ids == [second, first]
        # switch from the sidebar
        conversations = chat(app).conversations
        conversations.focus()
        conversations.highlighted = ids.index(first)
        await pilot.press("enter")
        await pilot.pause()
        assert chat(app).meta.id == first
        assert chat(app).pane.log_view.views()[0].message.content == "first conversation"
        # pin the open conversation: it goes first
        await pilot.press("f3")
        await pilot.pause()
        assert app.store.get_conversation(first).pinned
        assert app.store.list_conversations()[0].id == first
        assert conversations.get_option_at_index(0).id == first


@pilot_test
async def test_rename(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        await send(pilot, "a question about taxes")
        cid = chat(app).meta.id
        assert app.store.get_conversation(cid).title == "a question about taxes"
        await pilot.press("f2")
        assert isinstance(app.screen, TextInputScreen)
        app.screen.query_one("Input").value = "Tax letter"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert app.store.get_conversation(cid).title == "Tax letter"
        assert "Tax letter" in app.sub_title


@pilot_test
async def test_delete_asks_first(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    keep = seed(store, "Keep", 1)
    doomed = seed(store, "Doomed", 1)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert chat(app).meta.id == doomed
        await pilot.press("f8")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert [m.id for m in store.list_conversations()] == [doomed, keep]
        await pilot.press("f8")
        await pilot.press("y")
        await pilot.pause()
        assert [m.id for m in store.list_conversations()] == [keep]
        assert chat(app).meta.id == keep


@pilot_test
async def test_search_opens_the_conversation_at_the_message(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    target = seed(store, "Big", PAGE * 2)
    seed(store, "Other", 2)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"question 3")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert chat(app).meta.id == target
        log = chat(app).pane.log_view
        assert log.selected is not None
        assert log.selected.message.content == "Big question 3"
        assert log.hidden_before == 1  # only a few messages before the hit are mounted


@pilot_test
async def test_export_and_import_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    monkeypatch.setenv("LMDESK_EXPORT_DIR", str(exports))
    app = make_app(tmp_path, reply="the **answer**")
    async with app.run_test() as pilot:
        await send(pilot, "round trip")
        await pilot.press("f6")
        assert isinstance(app.screen, TextInputScreen)
        await pilot.press("enter")  # default: <export folder>/<slug>.md
        await pilot.pause()
        markdown = (exports / "round-trip.md").read_text()
        assert "round trip" in markdown and "the **answer**" in markdown
        assert any(str(exports / "round-trip.md") in text for _s, text in notifications(app))
        exported = chat(app).export_to(chat(app).meta.id, Path("out/conv.json"))
        assert exported == exports / "out/conv.json"
        data = json.loads((exports / "out/conv.json").read_text())
        assert [m["content"] for m in data["messages"]] == ["round trip", "the **answer**"]
        before = {m.id for m in app.store.list_conversations()}
        await pilot.press("f7")
        app.screen.query_one("Input").value = str(exports / "out/conv.json")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # the conversation is here already
        await pilot.press("y")
        await pilot.pause()
        new = chat(app).meta.id
        assert new not in before
        assert [m.content for m in app.store.messages(new)] == ["round trip", "the **answer**"]


@pilot_test
async def test_import_of_a_bad_file_is_a_notice(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        meta = await chat(app).import_from(tmp_path / "bad.json")
        await pilot.pause()
        assert meta is None
        assert any(sev == "error" and "bad.json" in text for sev, text in notifications(app))


@pilot_test
async def test_system_prompt_edit_is_used_by_the_next_reply(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SystemPromptScreen)
        app.screen.query_one("TextArea").load_text("Answer in French.")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await pilot.pause()
        cid = chat(app).meta.id
        assert app.store.get_conversation(cid).system_prompt == "Answer in French."
        await send(pilot, "hello")
        assert engine.requests[-1][0].role == "system"
        assert engine.requests[-1][0].content == "Answer in French."


@pilot_test
async def test_long_conversation_mounts_a_page_and_loads_earlier(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    seed(store, "Long", PAGE * 2)  # 4 pages of messages
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await pilot.pause()
        log = chat(app).pane.log_view
        assert len(log.views()) == PAGE
        assert log.hidden_before == PAGE * 3
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert len(log.views()) == PAGE * 2
        # scrolling to the top loads the next page by itself
        log.scroll_home(animate=False)
        await wait_for(pilot, lambda: len(log.views()) == PAGE * 3)
        # sending still appends at the end
        await send(pilot, "one more")
        await wait_idle(pilot)
        assert log.views()[-1].message.role == "assistant"
        assert log.views()[-2].message.content == "one more"


@pilot_test
async def test_palette_lists_actions_and_conversations(tmp_path: Path) -> None:
    from tui.app.commands import ActionsProvider, ConversationsProvider

    store = Store.open(make_paths(tmp_path).data_dir)
    wanted = seed(store, "Holiday plans", 1)
    seed(store, "Other", 1)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await pilot.pause()
        actions = ActionsProvider(app.screen)
        hits = sorted([hit async for hit in actions.search("regenerate")], reverse=True)
        assert hits[0].text == "Regenerate: Write the last reply again, keeping the old one (^r)"
        conversations = ConversationsProvider(app.screen)
        await conversations.startup()
        found = [hit async for hit in conversations.search("holiday")]
        assert len(found) == 1
        await found[0].command()  # type: ignore[misc]
        await pilot.pause()
        assert chat(app).meta.id == wanted
