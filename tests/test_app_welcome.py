"""The first minutes: the welcome never swallows what a new user types first."""

from __future__ import annotations

from pathlib import Path

from textual import events

from tests.app_fixtures import chat, make_app, pilot_test, wait_for
from tui.app.screens.doctor import DoctorScreen
from tui.app.screens.models import ModelsScreen
from tui.app.screens.welcome import WelcomeScreen
from tui.doctor.machine import LlamaBuild

LLAMA = LlamaBuild(found=True, version="0.0-test", backends=("CPU",))
QUESTION = "what does a model do?"  # holds m, d and q: the welcome's old single keys


@pilot_test
async def test_a_question_typed_into_the_welcome_is_asked(tmp_path: Path) -> None:
    app = make_app(tmp_path, show_welcome=True, reply="It predicts the next word.")
    app.doctor_llama = LLAMA
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.press(*QUESTION)
        assert not isinstance(app.screen, WelcomeScreen | ModelsScreen | DoctorScreen)
        prompt = chat(app).pane.prompt
        assert prompt.text == QUESTION and prompt.has_focus
        await pilot.press("enter")
        screen = chat(app)
        await wait_for(pilot, lambda: screen.meta is not None
                       and len(app.store.messages(screen.meta.id)) == 2, timeout=20)
        messages = app.store.messages(screen.meta.id)
        assert messages[0].role == "user" and messages[0].content == QUESTION
        assert messages[1].content == "It predicts the next word."


@pilot_test
async def test_a_paste_into_the_welcome_lands_in_the_prompt(tmp_path: Path) -> None:
    app = make_app(tmp_path, show_welcome=True)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        app.screen.post_message(events.Paste("Summarise this:\nline two"))
        await wait_for(pilot, lambda: not isinstance(app.screen, WelcomeScreen))
        assert chat(app).pane.prompt.text == "Summarise this:\nline two"


@pilot_test
async def test_the_welcome_keys_still_work_and_enter_alone_closes(tmp_path: Path) -> None:
    app = make_app(tmp_path, show_welcome=True)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, WelcomeScreen))
        assert chat(app).pane.prompt.text == ""
        await app.run_spec("welcome")
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen))
