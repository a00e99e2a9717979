"""Pilot test of remote endpoints: a real ``ApiServer`` on loopback serving a scripted engine,
added in the model switcher (ctrl+o, e), chosen for the conversation; a reply streams and is
stored with its model; the conversation is marked remote; with the server gone the reply says
the connection was refused and the app keeps running."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tests.app_fixtures import chat, make_app, notifications, pilot_test, send, wait_for
from tui.app.app import LmdeskApp
from tui.app.screens.endpoints import EndpointForm, EndpointsScreen
from tui.app.screens.models import ModelsScreen
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.app.widgets.sidebar import ConversationList
from tui.engine.scripted import ScriptedEngine
from tui.models.endpoints import EndpointLibrary
from tui.serve import ApiServer, EnginePool
from tui.store import EndpointModel


def start_server(reply: str = "Hello from far away.") -> ApiServer:
    pool = EnginePool()
    engine = ScriptedEngine(reply, name="remote-bot", delay_s=0.005)
    engine.load()
    pool.register("remote-bot", engine, default=True)
    return ApiServer(pool, "127.0.0.1", 0).start()


async def open_endpoints(pilot: Pilot[Any]) -> EndpointsScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app, LmdeskApp) and app.model_state == "ready")
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, EndpointsScreen))
    screen = app.screen
    assert isinstance(screen, EndpointsScreen)
    return screen


async def add_in_form(pilot: Pilot[Any], screen: EndpointsScreen, name: str, url: str) -> None:
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, EndpointForm))
    form = pilot.app.screen
    form.query_one("#ep-name", Input).value = name
    form.query_one("#ep-url", Input).value = url
    form.query_one("#ep-name", Input).focus()
    await pilot.pause()
    for _ in range(4):  # enter moves through the fields, the last one adds
        await pilot.press("enter")
        await pilot.pause()
    await wait_for(pilot, lambda: pilot.app.screen is screen)


def last_reply(app: LmdeskApp) -> Any:
    meta = chat(app).meta
    return [m for m in app.store.messages(meta.id) if m.role == "assistant"][-1]


@pilot_test
async def test_chat_through_a_remote_endpoint_then_the_server_goes_away(tmp_path: Path) -> None:
    server = start_server()
    app = make_app(tmp_path, reply="local reply")
    try:
        async with app.run_test(size=(130, 40)) as pilot:
            screen = await open_endpoints(pilot)
            await add_in_form(pilot, screen, "lab", server.url)
            [endpoint] = EndpointLibrary(app.store).list()
            assert endpoint.base_url == server.url
            await wait_for(pilot, lambda: screen.models.get(endpoint.id) == ["remote-bot"])
            table = screen.query_one(DataTable)
            assert table.row_count == 1
            table.focus()
            await pilot.press("enter")  # run this conversation on remote-bot at lab
            await wait_for(pilot, lambda: app.remote is not None and app.model_state == "ready")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: chat(app) is app.screen)

            await send(pilot, "hi there")
            reply = last_reply(app)
            assert reply.content == "Hello from far away."
            assert reply.model == "remote-bot"
            assert reply.status == "done"
            assert reply.stats and reply.stats["time_to_first_token_s"] > 0
            meta = app.store.get_conversation(chat(app).meta.id)
            assert meta.options.model == EndpointModel(endpoint.id, "remote-bot", "lab")
            # marked remote: title, sidebar entry, monitor
            assert "⇄ lab" in app.sub_title
            options = chat(app).query_one(ConversationList)
            current = options.get_option(meta.id)
            assert "⇄ lab" in str(current.prompt)
            lines = dict(chat(app).query_one(MonitorPanel).lines())
            assert lines["model"] == "remote-bot (remote)"

            server.stop()
            await send(pilot, "again?")
            reply = last_reply(app)
            assert reply.status == "error"
            assert "connection refused by" in (reply.error or "")
            assert "is the server running?" in (reply.error or "")
            assert any("connection refused" in message for _sev, message in notifications(app))
            assert app.is_running
    finally:
        server.stop()


@pilot_test
async def test_a_refused_endpoint_is_reported_when_refreshing(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    app = make_app(tmp_path)
    async with app.run_test(size=(130, 40)) as pilot:
        screen = await open_endpoints(pilot)
        endpoint = screen.add_endpoint("gone", f"http://127.0.0.1:{port}/v1")
        assert endpoint is not None
        await wait_for(pilot, lambda: endpoint.id in screen.errors)
        assert screen.errors[endpoint.id] == (
            f"connection refused by http://127.0.0.1:{port}: is the server running?")
        assert any("connection refused" in m for _s, m in notifications(app))
        # no model known: enter says so instead of switching
        await pilot.press("enter")
        await pilot.pause()
        assert app.remote is None
        # remove it
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: EndpointLibrary(app.store).list() == [])
