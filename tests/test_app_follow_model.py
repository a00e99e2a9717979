"""A conversation that was switched to another model gets it back when lmdesk starts on it."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import make_app, make_paths, pilot_test, wait_for
from tui.engine.base import Engine
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.store import LocalModel, Store


@pilot_test
async def test_the_last_conversation_loads_its_own_model_after_start(tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")  # only its path matters to the scripted factory
    paths = make_paths(tmp_path)
    store = Store.open(paths.data_dir)
    meta = store.create_conversation("Uses the other model", model="other")
    store.update_options(meta.id, model=LocalModel(str(other), "other"))
    loads: list[str] = []

    def factory(params: LoadParams) -> Engine:
        loads.append(params.model_path)
        # the start-up model takes a while, so the conversation opens while it loads
        delay = 1.0 if len(loads) == 1 else 0.0
        return ScriptedEngine("hi", name=Path(params.model_path).stem, load_delay_s=delay)

    app = make_app(tmp_path, store=store, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_path == str(other) and app.model_state == "ready",
                       timeout=20)
        assert loads == ["scripted.gguf", str(other)]
        assert app.model_name == "other"
