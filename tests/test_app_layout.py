"""Layout and state shown (issue 21.16): notifications never cover the prompt or a dialog's
buttons; the persona in use is on screen; a base model says it runs in completion mode; the
remote marker goes when the conversation is back on a local model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widgets import Button
from textual.widgets._toast import Toast

from tests.app_fixtures import chat, make_app, notifications, pilot_test, send, wait_for
from tests.test_app_endpoints import add_in_form, open_endpoints, start_server
from tui.app.screens.confirm import ConfirmScreen
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.app.widgets.sidebar import ConversationList
from tui.engine.protocol import ModelInfo
from tui.engine.scripted import ScriptedEngine

LONG = "A notification long enough to take several lines of the toast. " * 4


def _covered(app: object, widget: object) -> list[tuple[int, int]]:
    """The cells of ``widget`` where something else (a toast) is drawn on top."""
    screen = app.screen  # type: ignore[attr-defined]
    region = widget.region  # type: ignore[attr-defined]
    out = []
    for y in range(region.y, region.bottom):
        for x in range(region.x, region.right):
            top, _ = screen.get_widget_at(x, y)
            if top is not widget and widget not in top.ancestors:
                out.append((x, y))
    return out


@pilot_test
async def test_notifications_cover_neither_the_prompt_nor_dialog_buttons(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        for _ in range(3):
            app.notify(LONG, timeout=30)
        await pilot.pause(0.3)
        assert app.screen.query(Toast)
        assert _covered(app, chat(app).pane.prompt) == []
        await pilot.press("f8")  # a dialog with buttons
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        for _ in range(3):
            app.notify(LONG, timeout=30)
        await pilot.pause(0.3)
        buttons = list(app.screen.query(Button))
        assert buttons and app.screen.query(Toast)
        assert [_covered(app, b) for b in buttons] == [[] for _ in buttons]


@pilot_test
async def test_the_persona_in_use_is_shown(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "/persona coder")
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: " as " in str(panel.query_one("#monitor-body").render()))
        line = str(panel.query_one("#monitor-body").render())
        from tui.prompting.personas import PersonaLibrary

        name = PersonaLibrary(app.store).get("coder").name
        assert line.startswith(f"scripted as {name} · ")
        await pilot.press("f12")
        await pilot.pause()
        assert ("persona", name) in panel.lines()


class BaseModelEngine(ScriptedEngine):
    """A model without a chat template."""

    def load(self) -> ModelInfo:
        info = super().load()
        self._info = dataclasses.replace(info, chat_template=None)
        return self._info

    @property
    def info(self) -> ModelInfo | None:
        return getattr(self, "_info", None)


@pilot_test
async def test_a_base_model_says_it_runs_in_completion_mode(tmp_path: Path) -> None:
    app = make_app(tmp_path, engine=BaseModelEngine("once upon a time"))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.pause()
        assert any("completion mode" in m for _s, m in notifications(app))


@pilot_test
async def test_the_remote_marker_goes_when_back_on_a_local_model(tmp_path: Path) -> None:
    server = start_server()
    app = make_app(tmp_path, reply="local reply")
    try:
        async with app.run_test(size=(130, 40)) as pilot:
            screen = await open_endpoints(pilot)
            await add_in_form(pilot, screen, "lab", server.url)
            await wait_for(pilot, lambda: bool(screen.models))
            screen.query_one("DataTable").focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.remote is not None and app.model_state == "ready")
            await pilot.press("escape", "escape")
            await wait_for(pilot, lambda: chat(app) is app.screen)
            meta = chat(app).meta
            listing = chat(app).query_one(ConversationList)
            assert "⇄ lab" in str(listing.get_option(meta.id).prompt)
            assert app.use_model("scripted.gguf", "scripted")  # back to the local model
            await wait_for(pilot, lambda: app.remote is None and app.model_state == "ready")
            assert "⇄" not in str(listing.get_option(meta.id).prompt)  # at once, no message
            assert "⇄" not in app.sub_title
    finally:
        server.stop()


@pilot_test
async def test_wrapped_doctor_lines_go_on_under_their_value(tmp_path: Path) -> None:
    from tests.test_app_doctor import LLAMA
    from tui.app.screens.doctor import CHECKING, DoctorScreen

    app = make_app(tmp_path)
    app.doctor_llama = LLAMA
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen))
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await wait_for(pilot, lambda: screen.text != CHECKING, timeout=30)
        await pilot.pause(0.2)
        body = screen.query_one("#doctor-text")
        region = body.content_region
        strips = app.screen._compositor.render_strips()
        rows = ["".join(seg.text for seg in strip) for strip in strips]
        visible = screen.query_one("#doctor-scroll").content_region
        shown = [row[region.x:region.right].rstrip()
                 for row in rows[visible.y:visible.bottom]]
        # a wrapped line goes on under its value ("  SIMD     ...", then 11 spaces)
        assert any(line.startswith(" " * 11) and line.strip() for line in shown), shown
        # every line that is not a heading (column 0 in the report) starts indented
        headings = {line for line in screen.text.splitlines() if line and line[0] != " "}
        assert all(line.startswith(" ") or line in headings or not line for line in shown)
