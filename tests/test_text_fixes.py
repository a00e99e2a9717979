"""The wording fixes of issue 21.15: plurals, hints that match their keys and fit, a
/persona typo that lists the names."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import chat, make_app, notifications, pilot_test, send, wait_idle
from tui.app.widgets.reply_lines import compare_stats_line, stats_line
from tui.display import count
from tui.kb.ingest import IngestReport
from tui.store import StoredMessage


def test_one_token_is_not_tokens() -> None:
    assert count(1, "token") == "1 token" and count(0, "token") == "0 tokens"
    assert count(2, "reply", "replies") == "2 replies"
    one = StoredMessage("m", "assistant", "Hi", 0.0, model="m", stats={
        "generated_tokens": 1, "generation_tokens_per_s": 9.0, "time_to_first_token_s": 0.1})
    assert stats_line(one).startswith("m · 1 token · 9.0 tok/s")
    line = compare_stats_line({"compare": {"mode": "together", "results": [
        {"model": "a", "generated_tokens": 1, "generation_tokens_per_s": 5.0}]}})
    assert "a 1 token " in line
    report = IngestReport()
    report.files_total, report.chunks_total = 1, 1
    assert report.summary().startswith("1 file, 1 chunk")


@pilot_test
async def test_persona_typo_lists_the_valid_names(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await send(pilot, "/persona nosuch")
        message = next(m for _s, m in notifications(app) if "nosuch" in m)
        assert "there are: " in message
        from tui.prompting.personas import PersonaLibrary

        for persona in PersonaLibrary(app.store).list_personas():
            assert persona.id in message


@pilot_test
async def test_the_edit_hint_is_whole_at_80_columns(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="ok")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "hello")
        await pilot.press("ctrl+e")
        await pilot.pause()
        status = chat(app).pane.query_one("#chat-status")
        text = str(status.render())
        shown = [line.rstrip() for line in text.splitlines()]
        assert status.region.height >= 2  # wrapped, not cut
        assert "esc cancels." in " ".join(" ".join(shown).split())
        await wait_idle(pilot)


@pilot_test
async def test_the_endpoints_hint_names_the_key_the_footer_shows(tmp_path: Path) -> None:
    from textual.binding import Binding

    from tui.app.screens.endpoints import EndpointsScreen

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_idle(pilot)
        app.push_screen(EndpointsScreen())
        await pilot.pause(0.2)
        hint = str(app.screen.query_one("#endpoints-hint").render())
        remove = next(b for b in EndpointsScreen.BINDINGS
                      if isinstance(b, Binding) and b.id == "endpoints.remove")
        footer_key = app.get_key_display(Binding(remove.key.split(",")[0], ""))
        assert f"{footer_key}/x remove" in hint, (footer_key, hint)
