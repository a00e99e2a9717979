"""Pilot tests of conversations as trees in the app: versions of a reply or a prompt and
moving between them, fork, continue, delete with what follows, search into a hidden branch,
and a damaged index at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app_fixtures import (
    chat,
    make_app,
    make_paths,
    notifications,
    pilot_test,
    rendered,
    send,
    wait_idle,
)
from tui.app.screens.confirm import ConfirmScreen
from tui.app.screens.search import SearchScreen
from tui.app.screens.welcome import WelcomeScreen
from tui.config import Settings
from tui.engine.scripted import ScriptedEngine
from tui.store import Store


def shown(app: Any) -> list[str]:
    """The contents of the messages the log shows."""
    return [v.message.content for v in chat(app).pane.log_view.views()]


def asked(engine: ScriptedEngine) -> list[str]:
    """What the model was last sent, the system prompt left out."""
    return [m.content for m in engine.requests[-1] if m.role != "system"]


def selected(app: Any) -> Any:
    return chat(app).pane.log_view.selected


async def regenerate_as(pilot: Any, engine: ScriptedEngine, text: str) -> None:
    engine._tokens = [text]
    await pilot.press("ctrl+r")
    await wait_idle(pilot)


@pilot_test
async def test_regenerate_three_times_then_move_between_the_versions(tmp_path: Path) -> None:
    engine = ScriptedEngine("answer 1")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "question")
        for n in (2, 3, 4):
            await regenerate_as(pilot, engine, f"answer {n}")
        assert shown(app) == ["question", "answer 4"]
        assert "‹ 4/4 ›" in rendered(chat(app).pane.log_view.views()[-1]).splitlines()[0]
        cid = chat(app).meta.id
        assert len(app.store.messages(cid)) == 5
        await pilot.press("f4")  # the last message is selected
        for _ in range(4):
            await pilot.press("left")  # and the fourth press stays on the first
        assert shown(app) == ["question", "answer 1"]
        assert selected(app).message.content == "answer 1"
        assert "‹ 1/4 ›" in rendered(selected(app)).splitlines()[0]
        await pilot.press("right")
        assert shown(app) == ["question", "answer 2"]
        assert [m.content for m in app.store.branch(cid)] == ["question", "answer 2"]  # kept
        # the conversation goes on from the version shown: the model sees that branch
        engine._tokens = ["more"]
        await send(pilot, "go on")
        assert asked(engine) == ["question", "answer 2", "go on"]
        assert shown(app) == ["question", "answer 2", "go on", "more"]
        await pilot.press("f4", "up")  # the user message has one version: nothing to switch
        await pilot.press("left")
        assert ("information", "This message has no other version.") in notifications(app)


@pilot_test
async def test_edit_an_early_prompt_then_go_back_to_the_old_branch(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        for prompt in ("first", "second", "third"):
            await send(pilot, prompt)
        await pilot.press("f4", "home")
        assert selected(app).message.content == "first"
        await pilot.press("e")
        pane = chat(app).pane
        assert pane.prompt.text == "first" and pane.editing is not None
        pane.prompt.load_text("first, better")
        await pilot.press("enter")
        await wait_idle(pilot)
        assert shown(app) == ["first, better", "ok"]
        assert asked(engine) == ["first, better"]
        await pilot.press("f4", "home")
        assert "‹ 2/2 ›" in rendered(selected(app)).splitlines()[0]
        await pilot.press("left")
        assert shown(app) == ["first", "ok", "second", "ok", "third", "ok"]
        assert len(app.store.messages(chat(app).meta.id)) == 8


@pilot_test
async def test_fork_from_a_selected_message(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "one")
        await send(pilot, "two")
        source = chat(app).meta.id
        await pilot.press("f4", "home", "down")  # the first reply
        await pilot.press("f")
        await pilot.pause()
        meta = chat(app).meta
        assert meta.id != source and meta.title == "one (fork)"
        assert shown(app) == ["one", "ok"]
        assert len(app.store.messages(source)) == 4  # the original is untouched
        await send(pilot, "only here")
        assert "only here" not in [m.content for m in app.store.messages(source)]


@pilot_test
async def test_continue_a_reply_cut_at_its_token_limit(tmp_path: Path) -> None:
    engine = ScriptedEngine(tokens=["The", " CPU", " runs"])
    app = make_app(tmp_path, engine=engine, settings=Settings(max_tokens=3))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "What does a CPU do?")
        engine._tokens = ["The", " CPU", " runs", " programs"]  # more than max_tokens
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        cid = chat(app).meta.id
        cut = app.store.branch(cid)[-1]
        assert cut.content == "The CPU runs" and cut.can_continue
        engine._tokens = [" programs", " fast."]
        await pilot.press("alt+g")
        await wait_idle(pilot)
        # the model was asked to write more of that reply: it is the last message it saw
        assert [(m.role, m.content) for m in engine.requests[-1] if m.role != "system"] == [
            ("user", "What does a CPU do?"), ("assistant", "The CPU runs")]
        reply = app.store.branch(cid)[-1]
        assert reply.id == cut.id and reply.content == "The CPU runs programs fast."
        assert reply.status == "done" and not reply.can_continue
        assert len(app.store.messages(cid)) == 3  # same message, no new prompt
        assert shown(app)[-1] == "The CPU runs programs fast."
        await pilot.press("alt+g")  # nothing left to continue
        assert any("can be continued" in text for _, text in notifications(app))


@pilot_test
async def test_continue_a_stopped_reply(tmp_path: Path) -> None:
    engine = ScriptedEngine(tokens=[f" w{i}" for i in range(400)], delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "go", wait=False)
        pane = chat(app).pane
        while pane.job is None or pane.job.tokens_shown < 3:
            await pilot.pause(0.02)
        await pilot.press("escape")
        await wait_idle(pilot)
        stopped = app.store.branch(chat(app).meta.id)[-1]
        assert stopped.status == "stopped"
        engine._tokens, engine._delay_s = [" end."], 0.0
        await pilot.press("alt+g")
        await wait_idle(pilot)
        final = app.store.branch(chat(app).meta.id)[-1]
        assert final.id == stopped.id and final.content == stopped.content + " end."


@pilot_test
async def test_delete_a_message_and_what_follows_asks_first(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test(size=(100, 30)) as pilot:
        for prompt in ("one", "two", "three"):
            await send(pilot, prompt)
        await pilot.press("f4", "home", "down", "down")  # "two"
        assert selected(app).message.content == "two"
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "and the 3 messages after it" in str(app.screen._question)
        await pilot.press("n")
        assert len(app.store.messages(chat(app).meta.id)) == 6
        await pilot.press("f4", "home", "down", "down", "delete")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert shown(app) == ["one", "ok"]
        assert len(app.store.messages(chat(app).meta.id)) == 2


@pilot_test
async def test_search_opens_the_hidden_branch_that_matched(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    c = store.create_conversation("Zoo")
    u = store.append_message(c.id, "user", "name an animal")
    store.append_message(c.id, "assistant", "a zebra")
    store.append_message(c.id, "assistant", "a lion", parent=u.id)
    app = make_app(tmp_path, store=store)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert shown(app) == ["name an animal", "a lion"]
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"zebra")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert shown(app) == ["name an animal", "a zebra"]
        assert selected(app).message.content == "a zebra"
        assert [m.content for m in app.store.branch(c.id)][-1] == "a zebra"


@pilot_test
async def test_a_damaged_index_lists_every_conversation_again(tmp_path: Path) -> None:
    data = make_paths(tmp_path).data_dir
    with Store.open(data) as s:
        for title in ("Tax letter", "Unit tests", "Story ideas"):
            c = s.create_conversation(title)
            s.append_message(c.id, "user", f"about {title}")
            s.append_message(c.id, "assistant", "sure")
    files = {p.name: p.read_bytes() for p in (data / "conversations").iterdir()}
    (data / "index.json").write_bytes(b"\x00" * 64)
    (data / "index.json.bak").write_bytes(b"{")
    app = make_app(tmp_path, store=Store.open(data), show_welcome=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert not isinstance(app.screen, WelcomeScreen)  # not a fresh install
        listed = chat(app).conversations
        titles = [str(listed.get_option_at_index(i).prompt)
                  for i in range(listed.option_count)]
        assert all(any(t in line for line in titles) for t in ("Tax letter", "Unit tests",
                                                               "Story ideas"))
        warnings = [text for severity, text in notifications(app) if severity == "warning"]
        (notice,) = [w for w in warnings if "index.json" in w]
        assert "the list of 3 conversations was rebuilt from their files" in notice
        assert shown(app) == ["about Story ideas", "sure"]
    assert {p.name: p.read_bytes() for p in (data / "conversations").iterdir()
            if p.name in files} == files
    assert len(list(data.glob("index.json*.corrupt-*"))) == 2
