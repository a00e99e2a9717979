"""Pilot tests of two models side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_fixtures import chat, make_app, pilot_test, rendered, wait_for
from tui.app.app import LmdeskApp
from tui.app.screens.compare import CompareScreen
from tui.config import Settings
from tui.engine.base import Engine
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.models.registry import packaged_models
from tui.store import Store


@pilot_test
async def test_compare_two_scripted_models(tmp_path: Path) -> None:
    def factory(params: LoadParams) -> Engine:
        text = "answer from B" if params.model_path == "b.gguf" else "answer from A"
        return ScriptedEngine(text)

    app = make_app(tmp_path, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        cid = chat(app).meta.id
        for mode in ("together", "one after the other"):
            screen = CompareScreen([("model-b", "b.gguf")], mode=mode,  # type: ignore[arg-type]
                                   conversation_id=cid)
            await app.push_screen(screen)
            await pilot.pause()
            screen.start("say something")
            await wait_for(pilot, lambda s=screen: not s.running and s.mode is not None)
            assert screen.sides is not None
            a, b = screen.sides
            assert a.text == "answer from A" and b.text == "answer from B"
            assert a.done is not None and b.done is not None
            assert mode in screen.note_text
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
        messages = app.store.messages(cid)
        assert [m.role for m in messages] == ["user", "assistant"] * 2
        pair = messages[-1]
        assert pair.model == "scripted vs model-b"
        assert pair.stats is not None and pair.stats["compare"]["models"] == ["scripted",
                                                                               "model-b"]
        assert "answer from A" in pair.content and "answer from B" in pair.content
        await pilot.pause(0.2)
        text = rendered(chat(app).pane.log_view.views()[-1], 200)
        assert "compare (one after the other): scripted" in text


@pytest.mark.skipif(len(packaged_models()) < 2, reason="needs both packaged models")
@pilot_test
async def test_compare_the_two_packaged_models(tmp_path: Path) -> None:
    from tui.engine.local import LocalEngine

    first, second = packaged_models()[:2]
    paths_store = Store.open(tmp_path / "data")
    from tests.app_fixtures import make_paths

    app = LmdeskApp(settings=Settings(max_tokens=8, n_ctx=512), paths=make_paths(tmp_path),
                    store=paths_store, engine_factory=LocalEngine, model_path=str(first.path),
                    model_name=first.name, show_welcome=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state != "loading", timeout=60)
        assert app.model_state == "ready"
        await pilot.press("alt+c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        screen.start("Name a colour.", (second.name, str(second.path)))
        await wait_for(pilot, lambda: not screen.running and screen.mode is not None,
                       timeout=60)
        assert screen.sides is not None
        for side in screen.sides:
            assert side.done is not None, side.error
            assert 0 < side.done.stats.generated_tokens <= 8
        assert screen.mode in ("together", "one after the other")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
