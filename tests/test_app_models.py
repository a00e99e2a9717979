"""Pilot tests of the model switcher: listing with fit, switching mid-chat on the real engine,
refusing a model that will not fit unless the user insists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.app_fixtures import (
    FakeSampler,
    chat,
    make_app,
    make_paths,
    notifications,
    pilot_test,
    send,
    wait_for,
)
from tui.app.app import LmdeskApp
from tui.app.screens.confirm import ConfirmScreen
from tui.app.screens.models import ModelsScreen
from tui.config import Settings
from tui.engine.base import Engine
from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams
from tui.models.fit import Resources
from tui.models.registry import packaged_models
from tui.store import LocalModel, Store

MiB = 1024**2


async def open_switcher(pilot: Pilot[Any]) -> ModelsScreen:
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ModelsScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ModelsScreen)
    await wait_for(pilot, lambda: screen.listed, timeout=20)
    await pilot.pause()
    return screen


async def pick(pilot: Pilot[Any], screen: ModelsScreen, path: str) -> None:
    from textual.widgets import DataTable

    table = screen.query_one("#local-models", DataTable)
    table.move_cursor(row=table.get_row_index(path))
    table.focus()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


async def send_and_wait(pilot: Pilot[Any], text: str, cid: str, count: int) -> None:
    """Send, then wait until the conversation holds ``count`` finished messages."""
    app = pilot.app
    assert isinstance(app, LmdeskApp)
    await send(pilot, text, wait=False)

    def finished() -> bool:
        messages = app.store.messages(cid)
        return len(messages) == count and messages[-1].status != "partial"

    await wait_for(pilot, finished, timeout=60)
    await wait_for(pilot, lambda: chat(app).pane.job is None)


@pilot_test
async def test_switcher_lists_packaged_models_with_fit(tmp_path: Path) -> None:
    refs = {r.name: str(r.path) for r in packaged_models()}
    assert {"smollm2-135m", "gemma3-270m"} <= set(refs)
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_switcher(pilot)
        rows = {r.model.name: r for r in screen.rows}
        for name in ("smollm2-135m", "gemma3-270m"):
            row = rows[name]
            assert row.fit is not None and row.fit.verdict in ("green", "amber")
            assert row.fit.ram_bytes > 0 and row.fit.suggested_n_ctx > 0
            assert row.assessment is not None and row.assessment.tok_s > 0
            assert row.verdict in ("green", "amber") and row.model.source == "packaged"
        assert rows["smollm2-135m"].model.has_chat_template
        assert not rows["gemma3-270m"].model.has_chat_template  # a base model
        # the catalogue shows the right file, its fit and speed before any download
        assert screen.catalogue and all(c.line() for c in screen.catalogue)
        qwen = next(c for c in screen.catalogue if c.entry.id == "qwen3-8b")
        assert len(qwen.options) >= 6 and all(o.assessment.tok_s > 0 for o in qwen.options)
        detail = str(screen.query_one("#models-detail").render())
        assert "RAM" in detail and "tok/s" in detail and "from packaged" in detail
        # filter and sort keys change the view, not the data
        await pilot.press("f")
        assert screen.filter == "fits"
        await pilot.press("s")
        assert screen.sort == "name"
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelsScreen))


@pilot_test
async def test_red_model_is_refused_unless_insisted(tmp_path: Path) -> None:
    path = next(str(r.path) for r in packaged_models() if r.name == "smollm2-135m")
    app = make_app(tmp_path)
    tiny = Resources(ram_available=64 * MiB, ram_total=512 * MiB)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        app.push_screen(ModelsScreen(resources=lambda: tiny))
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await wait_for(pilot, lambda: screen.listed, timeout=20)
        row = next(r for r in screen.rows if r.model.path == path)
        assert row.fit is not None and row.fit.verdict == "red"
        await pick(pilot, screen, path)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.model_name == "scripted"
        assert any("not loaded" in m for _s, m in notifications(app))
        await pick(pilot, screen, path)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.model_state == "ready" and app.model_path == path)
        assert app.model_name == "smollm2-135m"
        cid = chat(app).meta.id
        meta = app.store.get_conversation(cid)
        assert meta.model == "smollm2-135m"
        assert meta.options.model == LocalModel(path, "smollm2-135m")


@pilot_test
async def test_switch_conversation_model_mid_chat_real_engine(tmp_path: Path) -> None:
    refs = {r.name: str(r.path) for r in packaged_models()}
    smol, gemma = refs["smollm2-135m"], refs["gemma3-270m"]
    paths = make_paths(tmp_path)
    store = Store.open(paths.data_dir)

    def factory(params: LoadParams) -> Engine:
        return LocalEngine(params, log_path=tmp_path / "worker.log")

    sampler = FakeSampler()
    app = LmdeskApp(
        settings=Settings(max_tokens=8, n_ctx=1024), paths=paths, store=store,
        engine_factory=factory, model_path=smol, model_name="smollm2-135m",
        show_welcome=False,
    )
    app.sampler = sampler  # type: ignore[assignment]
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: app.model_state == "ready", timeout=60)
            cid = chat(app).meta.id
            await send_and_wait(pilot, "Say hello.", cid, 2)
            screen = await open_switcher(pilot)
            await pick(pilot, screen, gemma)
            await wait_for(pilot, lambda: app.model_state == "ready" and app.model_path == gemma,
                           timeout=60)
            # both fit here: the first stays loaded beside the second, both workers watched
            assert {m.key for m in app.session.loaded()} == {smol, gemma}
            assert len([p for p in sampler.watched if p > 0]) == 2
            await wait_for(pilot, lambda: gemma in screen.rss, timeout=10)
            detail = str(screen.query_one("#models-detail").render())
            assert "worker RSS" in detail and "estimate" in detail
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ModelsScreen))
            await send_and_wait(pilot, "The capital of France is", cid, 4)
            messages = app.store.messages(cid)
            assert [(m.role, m.model) for m in messages if m.role == "assistant"] == [
                ("assistant", "smollm2-135m"), ("assistant", "gemma3-270m"),
            ]
            assert all(m.status == "done" for m in messages)
            assert app.store.get_conversation(cid).model == "gemma3-270m"
            # a new conversation, switched back to smollm2; opening the first again follows it
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.use_model(smol, "smollm2-135m")
            await wait_for(pilot, lambda: app.model_state == "ready" and app.model_path == smol)
            await chat(app).open_conversation(cid)
            await wait_for(pilot, lambda: app.model_state == "ready" and app.model_path == gemma)
            usage = {r["name"]: r["usage"]["replies"] for r in store.table("profiles").all()}
            assert usage == {"smollm2-135m": 1, "gemma3-270m": 1}
    finally:
        app.close_engine()
        store.close()


async def download_first_entry(pilot: Pilot[Any]) -> ModelsScreen:
    from textual.widgets import DataTable, TabbedContent

    screen = await open_switcher(pilot)
    screen.query_one(TabbedContent).active = "tab-catalogue"
    await pilot.pause()
    table = screen.query_one("#catalogue", DataTable)
    table.move_cursor(row=0)
    table.focus()
    await pilot.pause()
    await pilot.press("d")
    return screen


@pilot_test
async def test_catalogue_download_with_progress(
    tmp_path: Path, smollm: Path, monkeypatch: Any
) -> None:
    from tests.hub_server import HubServer
    from tui.models.catalogue import load_catalogue

    entry = load_catalogue()[0]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with HubServer() as server:
        for f in entry.files:
            server.add(entry.repo_id, f.file, smollm)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        app = make_app(tmp_path)
        async with app.run_test(size=(160, 40)) as pilot:
            screen = await download_first_entry(pilot)
            best = screen.catalogue[0].best
            assert best is not None  # the file that suits this machine is the one fetched
            detail = str(screen.query_one("#models-detail").render())
            assert "best here:" in detail and best.file in detail
            await wait_for(pilot, lambda: any("is in" in m for _s, m in notifications(app)),
                           timeout=30)
    assert list((tmp_path / "hf").rglob(best.file))


@pilot_test
async def test_download_without_network_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    from tests.hub_server import HubServer

    server = HubServer().start()
    dead = server.url
    server.stop()  # nothing listens there now
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", dead)
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await download_first_entry(pilot)
        await wait_for(pilot, lambda: any(s == "error" and "no network" in m
                                          for s, m in notifications(app)), timeout=30)
        assert screen._cancel is None and app.screen is screen
