"""Pilot tests of the chat: send, stream, stop, regenerate, edit, history, copy, failures."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import (
    CODE_REPLY,
    chat,
    make_app,
    notifications,
    pilot_test,
    rendered,
    send,
    wait_for,
    wait_idle,
)
from tui.engine.errors import ModelLoadError, PromptTooLong
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.store import Store

LONG = " ".join(f"word{i}" for i in range(400))


@pilot_test
async def test_send_streams_reply_and_saves_both(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "hello there")
        cid = chat(app).meta.id
        messages = app.store.messages(cid)
        assert [(m.role, m.status) for m in messages] == [("user", "done"), ("assistant", "done")]
        assert messages[1].content == CODE_REPLY
        assert messages[1].stats is not None
        assert messages[1].stats["generated_tokens"] > 0
        assert messages[1].stats["model"] == "scripted"
        # the reply is rendered as Markdown, code blocks numbered, with its figures below
        view = chat(app).pane.log_view.views()[-1]
        assert view.message.content == CODE_REPLY
        text = rendered(view)
        assert "[1] python" in text and "[2] bash" in text and "```" not in text
        meta = text.splitlines()[-1]
        assert "scripted" in meta and "tok/s" in meta and "ttft" in meta
        # the conversation took its title from the first prompt
        assert app.store.get_conversation(cid).title == "hello there"


@pilot_test
async def test_reply_is_saved_partial_while_streaming(tmp_path: Path) -> None:
    engine = ScriptedEngine(LONG, delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "go", wait=False)
        cid = chat(app).meta.id
        await wait_for(pilot, lambda: len(app.store.messages(cid)) == 2)
        assert app.store.messages(cid)[1].status == "partial"
        assert chat(app).check_action("stop", ()) is True
        await pilot.press("escape")
        await wait_idle(pilot)


@pilot_test
async def test_escape_stops_and_keeps_partial_reply(tmp_path: Path) -> None:
    engine = ScriptedEngine(LONG, delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "go", wait=False)
        pane = chat(app).pane
        await wait_for(pilot, lambda: pane.job is not None and pane.job.tokens_shown > 3)
        await pilot.press("escape")
        await wait_idle(pilot)
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.role == "assistant"
        assert reply.status == "stopped"
        assert reply.content and LONG.startswith(reply.content)
        assert len(reply.content) < len(LONG)
        assert "stopped" in rendered(pane.log_view.views()[-1]).splitlines()[-1]
        assert chat(app).check_action("stop", ()) is False


@pilot_test
async def test_regenerate_shows_a_new_version_and_keeps_the_old(tmp_path: Path) -> None:
    engine = ScriptedEngine("first answer")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "question")
        engine._tokens = ["second ", "answer"]
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        cid = chat(app).meta.id
        assert [m.content for m in app.store.branch(cid)] == ["question", "second answer"]
        assert [m.content for m in app.store.messages(cid)] == [
            "question", "first answer", "second answer"]
        assert len(engine.requests) == 2
        assert engine.requests[0] == engine.requests[1]
        assert len(chat(app).pane.log_view.views()) == 2


@pilot_test
async def test_edit_last_prompt_and_resend(tmp_path: Path) -> None:
    engine = ScriptedEngine("ok")
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "first prompt")
        await send(pilot, "typo prompt")
        await pilot.press("ctrl+e")
        prompt = chat(app).pane.prompt
        assert prompt.text == "typo prompt"
        prompt.load_text("fixed prompt")
        await pilot.press("enter")
        await wait_idle(pilot)
        cid = chat(app).meta.id
        branch = app.store.branch(cid)
        assert [m.content for m in branch] == ["first prompt", "ok", "fixed prompt", "ok"]
        assert "typo prompt" in [m.content for m in app.store.messages(cid)]  # kept
        assert engine.requests[-1][-1].content == "fixed prompt"
        assert "typo prompt" not in [m.content for m in engine.requests[-1]]


@pilot_test
async def test_escape_cancels_editing(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        await send(pilot, "keep me")
        await pilot.press("ctrl+e")
        await pilot.press("escape")
        assert chat(app).pane.editing is None
        assert chat(app).pane.prompt.text == ""
        assert len(app.store.messages(chat(app).meta.id)) == 2


@pilot_test
async def test_prompt_history_recall_with_up_and_down(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        await send(pilot, "one")
        await send(pilot, "two")
        prompt = chat(app).pane.prompt
        prompt.load_text("draft")
        await pilot.press("up")
        assert prompt.text == "two"
        await pilot.press("up")
        assert prompt.text == "one"
        await pilot.press("down")
        assert prompt.text == "two"
        await pilot.press("down")
        assert prompt.text == "draft"


@pilot_test
async def test_newline_keys_do_not_send(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test() as pilot:
        prompt = chat(app).pane.prompt
        prompt.focus()
        await pilot.press("a", "ctrl+j", "b", "alt+enter", "c")
        assert prompt.text == "a\nb\nc"
        assert app.store.messages(chat(app).meta.id) == []
        await pilot.press("enter")
        await wait_idle(pilot)
        assert app.store.messages(chat(app).meta.id)[0].content == "a\nb\nc"


@pilot_test
async def test_copy_reply_message_and_code_blocks(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await send(pilot, "show me code")
        await pilot.press("ctrl+y")
        assert app.clipboard == CODE_REPLY
        await pilot.press("ctrl+g")  # two blocks: asks which
        await pilot.press("2", "enter")
        assert app.clipboard == "echo hello"
        # select the prompt in the message list, copy it; digits copy code blocks
        await pilot.press("f4")
        await pilot.press("up")
        await pilot.press("ctrl+y")
        assert app.clipboard == "show me code"
        await pilot.press("down", "1")
        assert app.clipboard == "print('hello')"


@pilot_test
async def test_prompt_sent_while_loading_waits_for_the_model(tmp_path: Path) -> None:
    engine = ScriptedEngine("loaded reply", load_delay_s=1.5)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        assert app.model_state == "loading"
        await send(pilot, "early", wait=False)
        await wait_for(pilot, lambda: chat(app).pane.job is not None)
        status = str(chat(app).pane.query_one("#chat-status").render())
        assert "Waiting for the model" in status
        await wait_idle(pilot)
        assert app.model_state == "ready"
        assert app.store.messages(chat(app).meta.id)[-1].content == "loaded reply"


@pilot_test
async def test_load_failure_is_a_notice_and_the_app_keeps_running(tmp_path: Path) -> None:
    def broken(_params: LoadParams) -> ScriptedEngine:
        raise ModelLoadError("no such file: /models/missing.gguf")

    app = make_app(tmp_path, engine_factory=broken)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.model_state == "failed")
        assert any(
            sev == "error" and "missing.gguf" in text for sev, text in notifications(app)
        )
        await send(pilot, "anyone there?")
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.status == "error"
        assert "not loaded" in (reply.error or "")
        assert app.is_running


@pilot_test
async def test_context_full_is_reported(tmp_path: Path) -> None:
    class Full(ScriptedEngine):
        def generate(self, messages, sampling, *, raw_prompt=None):  # type: ignore[no-untyped-def]
            raise PromptTooLong("The prompt needs 9000 tokens but the context holds 8192.")

    app = make_app(tmp_path, engine=Full())
    async with app.run_test() as pilot:
        await send(pilot, "too long")
        assert any("context holds" in text for _sev, text in notifications(app))
        assert app.store.messages(chat(app).meta.id)[-1].status == "error"


@pilot_test
async def test_engine_crash_mid_reply_keeps_partial_text(tmp_path: Path) -> None:
    class Dies(ScriptedEngine):
        def generate(self, messages, sampling, *, raw_prompt=None):  # type: ignore[no-untyped-def]
            yield from list(super().generate(messages, sampling))[:3]
            raise RuntimeError("worker died")

    app = make_app(tmp_path, engine=Dies("one two three four five"))
    async with app.run_test() as pilot:
        await send(pilot, "go")
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.status == "error"
        assert reply.content == "one two three"
        assert "worker died" in (reply.error or "")


@pilot_test
async def test_read_only_store_refuses_to_send(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Store.open(data)
    first.create_conversation("Existing")
    second = Store.open(data)
    try:
        assert second.read_only
        app = make_app(tmp_path, store=second)
        async with app.run_test() as pilot:
            await pilot.pause()
            assert "read-only" in app.title
            assert "READ-ONLY" in app.sub_title
            await send(pilot, "hello", wait=False)
            await pilot.pause()
            assert any("Read-only" in text for _sev, text in notifications(app))
            assert chat(app).pane.prompt.text == "hello"
    finally:
        second.close()
        first.close()


@pilot_test
async def test_quit_mid_reply_keeps_it_as_stopped(tmp_path: Path) -> None:
    engine = ScriptedEngine(LONG, delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "go", wait=False)
        pane = chat(app).pane
        await wait_for(pilot, lambda: pane.job is not None and pane.job.tokens_shown > 3)
        cid = chat(app).meta.id
        await pilot.press("ctrl+q")
        await pilot.pause()
    reply = app.store.messages(cid)[-1]
    assert reply.role == "assistant" and reply.status == "stopped"
    assert reply.content and LONG.startswith(reply.content)


@pilot_test
async def test_stop_while_waiting_for_the_model(tmp_path: Path) -> None:
    engine = ScriptedEngine("never shown", load_delay_s=1.5)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test() as pilot:
        await send(pilot, "early", wait=False)
        await wait_for(pilot, lambda: chat(app).pane.job is not None)
        await pilot.press("escape")
        await wait_for(pilot, lambda: chat(app).pane.job is None)
        messages = app.store.messages(chat(app).meta.id)
        assert [m.role for m in messages] == ["user"]  # nothing written, nothing kept
        assert engine.requests == []


@pilot_test
async def test_monitor_shows_the_last_reply(tmp_path: Path) -> None:
    from tui.app.widgets.monitor_panel import MonitorPanel

    app = make_app(tmp_path, reply="one two three")
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, "hi")
        monitor = chat(app).query_one(MonitorPanel)
        assert monitor.load_state == "ready"
        assert monitor.tokens_per_s is not None and monitor.tokens_per_s > 0
        assert monitor.ctx_used is not None and monitor.ctx_used > 0
        assert monitor.n_ctx == 8192
        assert "8k" in str(monitor.query_one("#monitor-body").render())
