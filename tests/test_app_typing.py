"""In a screen that shows a text box, what is typed goes into the box (issue 21.4)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.app_fixtures import make_app, notifications, pilot_test, wait_for, wait_idle
from tui.app.screens.knowledge import KnowledgeScreen
from tui.app.screens.template_form import TemplateFormScreen
from tui.app.screens.templates import TemplateList, TemplatesScreen
from tui.app.screens.text_input import TextInputScreen


@pilot_test
async def test_typing_in_the_template_library_searches(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatesScreen))
        screen = app.screen
        assert isinstance(screen, TemplatesScreen)
        await pilot.press(*"invoice email")  # "i" is import, "e" edit: in the list only
        await pilot.pause()
        assert screen.query_one("#templates-search", Input).value == "invoice email"
        assert isinstance(app.screen, TemplatesScreen)  # no import dialog
        assert not any("read-only" in m for _, m in notifications(app))
        # down moves into the results, enter picks one
        await pilot.press("ctrl+u")  # clear the box
        await pilot.press(*"email")
        await pilot.pause()
        await pilot.press("down")
        assert isinstance(app.focused, TemplateList)
        await pilot.press("down")
        chosen = screen.current()
        assert chosen is not None and chosen.name == screen.templates[1].name
        # a letter that is no action goes back to the search box
        await pilot.press("z")
        assert screen.query_one("#templates-search", Input).value == "emailz"
        await pilot.press("backspace", "enter")  # enter in the box: use the highlighted one
        await wait_for(pilot, lambda: isinstance(app.screen, TemplateFormScreen))
        assert app.screen.template.name == screen.templates[0].name  # type: ignore[attr-defined]


@pilot_test
async def test_typing_in_the_knowledge_base_dialog_names_it(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(pilot)
        await pilot.press("alt+k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnowledgeScreen))
        screen = app.screen
        await pilot.press(*"api notes")  # "a" attach, "i" reindex, "n" new: in the list only
        await pilot.pause()
        assert screen.query_one("#kb-name", Input).value == "api notes"
        assert not isinstance(app.screen, TextInputScreen)
        await pilot.press("up")
        assert app.focused is not None and app.focused.id == "kb-table"
