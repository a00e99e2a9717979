"""Keys typed in a burst in a form land where they should (issue 21.14): a terminal sends
"tab" and the next letters together, and Textual forwarded the letters to the field that
still had the focus while tab was on its way up to the app's binding."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.app import App
from textual.widgets import Input

from tests.app_fixtures import make_app, pilot_test, wait_for, wait_idle
from tui.app.screens.profiles import ProfileFormScreen
from tui.models.profiles import Profile


def burst(app: App[object], keys: str) -> None:
    """Send the keys at once, as the driver does when they arrive in one read (Pilot's
    press waits for the app to be idle after each key, which hides the race)."""
    driver = app._driver
    assert driver is not None
    for key in keys.split(" "):
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        driver.send_message(event)


@pilot_test
async def test_letters_typed_right_after_tab_land_in_the_next_field(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await wait_idle(pilot)
        app.push_screen(ProfileFormScreen(Profile(id="", nickname="", model_path="")))
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileFormScreen))
        form = app.screen
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "pf-nickname")
        nickname = form.query_one("#pf-nickname", Input)
        burst(app, "a b tab c d tab e shift+tab")
        await pilot.pause(0.3)
        assert nickname.value == "ab"
        assert form.query_one("#pf-model_path", Input).value == "cd"
        assert form.query_one("#pf-model_name", Input).value == "e"
        assert app.focused is form.query_one("#pf-model_path", Input)


@pilot_test
async def test_the_same_in_the_template_editor_and_tab_still_indents_the_system_prompt(
    tmp_path: Path,
) -> None:
    from textual.widgets import TextArea

    from tui.app.screens.system_prompt import SystemPromptScreen
    from tui.app.screens.templates import TemplateEditScreen

    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await wait_idle(pilot)
        app.push_screen(TemplateEditScreen(None))
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "edit-name")
        form = app.screen
        burst(app, "x tab y tab z")
        await pilot.pause(0.3)
        assert [form.query_one(f"#edit-{f}", Input).value for f in ("name", "title", "tags")
                ] == ["x", "y", "z"]
        app.pop_screen()
        await pilot.pause()
        app.push_screen(SystemPromptScreen(""))
        await wait_for(pilot, lambda: isinstance(app.focused, TextArea))
        await pilot.press("a", "tab", "b")
        assert app.screen.query_one(TextArea).text.startswith("a") and "\tb" not in (
            app.screen.query_one(TextArea).text)
        assert app.screen.query_one(TextArea).text.replace(" ", "") == "ab"
        assert isinstance(app.focused, TextArea)  # tab indented, the focus stayed
