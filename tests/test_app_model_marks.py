"""Issue 21, item 9: the model switcher marks every loaded model, not only the current one."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from tests.app_fixtures import chat, make_paths, pilot_test, wait_for
from tests.test_app_models import open_switcher, pick
from tui.app.app import LmdeskApp
from tui.app.screens.compare import CompareScreen
from tui.app.screens.models import ModelsScreen
from tui.config import Settings
from tui.engine.base import Engine
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.models.profiles import ProfileLibrary
from tui.models.registry import packaged_models
from tui.store import Store


def marks(screen: ModelsScreen, *paths: str) -> list[str]:
    table = screen.query_one("#local-models", DataTable)
    return [str(table.get_row(path)[0]) for path in paths]


def _app(tmp_path: Path, model_path: str) -> LmdeskApp:
    def factory(params: LoadParams) -> Engine:
        return ScriptedEngine(f"answer from {Path(params.model_path).stem}")

    paths = make_paths(tmp_path)
    return LmdeskApp(settings=Settings(), paths=paths, store=Store.open(paths.data_dir),
                     engine_factory=factory, model_path=model_path,
                     model_name=Path(model_path).stem, show_welcome=False)


@pilot_test
async def test_the_switcher_marks_both_models_after_loading_a_second(tmp_path: Path) -> None:
    refs = {r.name: str(r.path) for r in packaged_models()}
    smol, gemma = refs["smollm2-135m"], refs["gemma3-270m"]
    app = _app(tmp_path, smol)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        screen = await open_switcher(pilot)
        assert marks(screen, smol, gemma) == ["▶", ""]
        await pick(pilot, screen, gemma)
        await wait_for(pilot, lambda: app.model_state == "ready" and app.model_path == gemma)
        assert {m.key for m in app.session.loaded()} == {smol, gemma}
        if not isinstance(app.screen, ModelsScreen):
            screen = await open_switcher(pilot)
        await wait_for(pilot, lambda: marks(screen, smol, gemma) == ["●", "▶"])


@pilot_test
async def test_the_switcher_marks_compare_model_b_while_it_is_loaded(tmp_path: Path) -> None:
    refs = {r.name: str(r.path) for r in packaged_models()}
    smol, gemma = refs["smollm2-135m"], refs["gemma3-270m"]
    app = _app(tmp_path, smol)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        compare = CompareScreen([("gemma3-270m", gemma)], mode="together",
                                conversation_id=chat(app).meta.id)
        await app.push_screen(compare)
        await pilot.pause()
        compare.start("say something")
        await wait_for(pilot, lambda: not compare.running and compare.mode is not None)
        assert compare.sides is not None
        assert compare.sides[1].text == f"answer from {Path(gemma).stem}"
        await app.run_spec("models")  # the palette's "Models", over the compare view
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await wait_for(pilot, lambda: screen.listed, timeout=20)
        await pilot.pause()
        assert marks(screen, smol, gemma) == ["▶", "●"]


@pilot_test
async def test_the_switcher_marks_a_model_loaded_through_a_profile(tmp_path: Path) -> None:
    refs = {r.name: str(r.path) for r in packaged_models()}
    smol, gemma = refs["smollm2-135m"], refs["gemma3-270m"]
    app = _app(tmp_path, smol)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        profile = ProfileLibrary(app.store).create("storyteller", gemma, n_ctx=512)
        assert app.use_profile(profile)
        await wait_for(pilot, lambda: app.model_state == "ready" and app.profile is not None)
        # the profile's engine is keyed by the profile, not the file: the file is marked
        assert app.current is not None and app.current.key != gemma
        smol_kept = any(m.key == smol for m in app.session.loaded())
        screen = await open_switcher(pilot)
        assert marks(screen, smol, gemma) == ["●" if smol_kept else "", "▶"]
