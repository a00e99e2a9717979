"""Pilot test of model profiles: create one for the packaged smollm2 with n_ctx 512 and
temperature 0, use it for the conversation, reply with the real engine, usage recorded."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from tests.app_fixtures import FakeSampler, chat, make_paths, pilot_test, wait_for
from tests.test_app_models import open_switcher, send_and_wait
from tui.app.app import LmdeskApp
from tui.app.screens.confirm import ConfirmScreen
from tui.app.screens.profiles import ProfileFormScreen, ProfilesScreen
from tui.config import Settings
from tui.engine.base import Engine
from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams
from tui.models.profiles import ProfileLibrary
from tui.models.registry import packaged_models
from tui.store import ProfileModel, Store


@pilot_test
async def test_profile_created_used_and_measured_real_engine(tmp_path: Path) -> None:
    smol = next(str(r.path) for r in packaged_models() if r.name == "smollm2-135m")
    paths = make_paths(tmp_path)
    store = Store.open(paths.data_dir)

    def factory(params: LoadParams) -> Engine:
        return LocalEngine(params, log_path=tmp_path / "worker.log")

    app = LmdeskApp(settings=Settings(max_tokens=8, n_ctx=1024), paths=paths, store=store,
                    engine_factory=factory, model_path=smol, model_name="smollm2-135m",
                    show_welcome=False)
    app.sampler = FakeSampler()  # type: ignore[assignment]
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: app.model_state == "ready", timeout=60)
            cid = chat(app).meta.id
            switcher = await open_switcher(pilot)
            table = switcher.query_one("#local-models", DataTable)
            table.move_cursor(row=table.get_row_index(smol))
            await pilot.pause()
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen))
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, ProfileFormScreen))
            form = app.screen
            assert form.query_one("#pf-model_path", Input).value == smol  # from the switcher
            form.query_one("#pf-nickname", Input).value = "terse-coder"
            form.query_one("#pf-n_ctx", Input).value = "512"
            form.query_one("#pf-temperature", Input).value = "0"
            form.query_one("#pf-notes", Input).value = "short answers"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen))
            profiles = app.screen
            assert isinstance(profiles, ProfilesScreen)
            [profile] = ProfileLibrary(store).list()
            assert profile.n_ctx == 512 and profile.sampling == {"temperature": 0.0}
            # use it for this conversation: its own engine (same path, other n_ctx)
            await pilot.press("u")
            await wait_for(pilot, lambda: app.model_state == "ready"
                           and app.profile is not None, timeout=60)
            assert app.engine_info is not None and app.engine_info.n_ctx == 512
            assert app.model_label == "smollm2-135m (terse-coder)"
            assert app.current is not None
            assert app.current.key == profile.engine_key() != smol
            meta = store.get_conversation(cid)
            assert meta.options.model == ProfileModel(profile.id, profile.nickname, smol)
            await pilot.press("escape")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is chat(app))
            await send_and_wait(pilot, "Say hello.", cid, 2)
            reply = store.messages(cid)[-1]
            assert reply.status == "done" and reply.content
            assert reply.stats is not None and reply.stats["profile"] == "terse-coder"
            usage = ProfileLibrary(store).get(profile.id).usage
            assert usage.replies == 1 and usage.mean_tps > 0
            models_usage = {r["name"]: r["usage"]["replies"]
                            for r in store.table("profiles").all() if "name" in r}
            assert models_usage == {"smollm2-135m": 1}
            # delete asks first
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: not isinstance(app.screen, type(chat(app))))
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen))
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen))
            assert ProfileLibrary(store).list() == []
    finally:
        app.close_engine()
        store.close()


@pilot_test
async def test_a_profiles_rpc_workers_are_edited_in_its_form(tmp_path: Path) -> None:
    """The form's "RPC workers" field: shown, edited, saved; a bad address is one
    notification and the form comes back to fix it."""
    from tests.app_fixtures import make_app, notifications

    app = make_app(tmp_path)
    library = ProfileLibrary(app.store)
    library.create("split", "/m/smol.gguf", rpc=("127.0.0.1:5001",))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        app.push_screen(ProfilesScreen())
        await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen)
                       and bool(app.screen.query("#profiles-detail")))
        await pilot.pause()
        detail = str(app.screen.query_one("#profiles-detail").render())
        assert "RPC 127.0.0.1:5001" in detail
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileFormScreen))
        field = app.screen.query_one("#pf-rpc", Input)
        assert field.value == "127.0.0.1:5001"
        field.value = "127.0.0.1:5001, box:x"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("RPC workers" in m for _s, m in notifications(app)))
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileFormScreen))
        assert library.get("split").rpc == ("127.0.0.1:5001",)  # nothing half-saved
        app.screen.query_one("#pf-rpc", Input).value = "127.0.0.1:5001, box2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen))
        assert library.get("split").rpc == ("127.0.0.1:5001", "box2:50052")


@pilot_test
async def test_a_profile_with_rpc_workers_shows_how_its_model_would_be_split(
        tmp_path: Path, smollm: Path) -> None:
    from tests.app_fixtures import make_app
    from tests.test_rpc_worker import Worker

    worker = Worker("--mem", "1")
    try:
        app = make_app(tmp_path)
        ProfileLibrary(app.store).create("split", str(smollm), n_ctx=1024,
                                         rpc=(worker.address,))
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.model_state == "ready")
            app.push_screen(ProfilesScreen())
            await wait_for(pilot, lambda: isinstance(app.screen, ProfilesScreen)
                           and bool(app.screen.query("#profiles-detail")))

            def detail() -> str:
                return str(app.screen.query_one("#profiles-detail").render())

            await wait_for(pilot, lambda: "split over 1 RPC worker" in detail(), timeout=30)
            text = detail()
            assert f"{worker.address}: layers 0-30 (31), needs" in text
            assert "of 1.0 GiB offered; round trip" in text and "tok/s" in text
    finally:
        worker.stop()
