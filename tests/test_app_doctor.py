"""Pilot tests of the doctor screen and the first-run welcome."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import make_app, make_paths, pilot_test, wait_for
from tui.app.screens.doctor import CHECKING, DoctorScreen
from tui.app.screens.models import ModelsScreen
from tui.app.screens.welcome import WelcomeScreen
from tui.doctor.machine import LlamaBuild
from tui.store import Store

LLAMA = LlamaBuild(found=True, version="0.0-test", backends=("CPU",))


@pilot_test
async def test_welcome_shown_once_on_a_fresh_store(tmp_path: Path) -> None:
    app = make_app(tmp_path, show_welcome=True)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        screen = app.screen
        assert isinstance(screen, WelcomeScreen)
        await wait_for(pilot, lambda: screen.text != CHECKING)
        assert "kept on this machine" in screen.text
        assert "Loaded model: scripted" in screen.text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, WelcomeScreen))
    app.store.close()
    # the same data folder again: no welcome
    store = Store.open(make_paths(tmp_path).data_dir)
    again = make_app(tmp_path, store=store, show_welcome=True)
    async with again.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: again.model_state == "ready")
        await pilot.pause(0.1)
        assert not isinstance(again.screen, WelcomeScreen)
        # ... but it is reachable from the palette/keys
        await again.run_spec("welcome")
        await wait_for(pilot, lambda: isinstance(again.screen, WelcomeScreen))


@pilot_test
async def test_welcome_key_opens_the_model_switcher(tmp_path: Path) -> None:
    app = make_app(tmp_path, show_welcome=True)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen))
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: not isinstance(app.screen, WelcomeScreen))
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await wait_for(pilot, lambda: screen.listed, timeout=30)  # mounted and listed
        await pilot.pause(0.1)


@pilot_test
async def test_doctor_screen_shows_the_machine(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen))
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await wait_for(pilot, lambda: screen.report is not None)
        text = screen.text
        assert "Machine" in text and "RAM" in text and "cores" in text
        assert "llama-cpp-python 0.0-test" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DoctorScreen))
        assert any("Doctor" in row[1] or row[2] == "doctor" for row in app.binding_rows())
