"""Focus goes back to the prompt after every dialog and navigation (issue 21.3), unless the
user put it somewhere else on purpose."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import chat, make_app, make_paths, pilot_test, seed, send, wait_idle
from tui.app.screens.search import SearchScreen
from tui.app.widgets.prompt_input import PromptInput
from tui.store import Store


@pilot_test
async def test_typing_after_a_search_result_goes_into_the_prompt(tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    target = seed(store, "Big", 6)
    seed(store, "Other", 2)
    app = make_app(tmp_path, store=store)
    async with app.run_test() as pilot:
        await wait_idle(pilot)
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"question 3")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert chat(app).meta.id == target
        await pilot.press(*"next")
        assert isinstance(app.focused, PromptInput)
        assert chat(app).pane.prompt.text == "next"
        # and after a dialog opened from there
        await pilot.press("f6", "escape")
        await pilot.pause()
        await pilot.press("!")
        assert chat(app).pane.prompt.text == "next!"


@pilot_test
async def test_a_dialog_gives_the_focus_back_to_the_prompt(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await send(pilot, "hello")
        pane = chat(app).pane
        pane.log_view.focus()  # moved by the program, not by the user
        await pilot.pause()
        for keys in (("f6", "escape"), ("ctrl+s", "escape"), ("f8", "escape"),
                     ("f7", "escape")):
            await pilot.press(*keys)
            await pilot.pause()
            assert app.focused is pane.prompt, keys
            pane.log_view.focus()
            await pilot.pause()


@pilot_test
async def test_focus_the_user_chose_is_kept(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await send(pilot, "hello")
        pane = chat(app).pane
        await pilot.press("f4")  # the messages, on purpose
        assert app.focused is pane.log_view
        await pilot.press("f6", "escape")
        await pilot.pause()
        assert app.focused is pane.log_view
        await pilot.press("f5", "f6", "escape")
        await pilot.pause()
        assert app.focused is pane.prompt
