"""The monitor beyond this machine: each RPC worker's memory and state through its gate (a real
``lmdesk rpc-worker``), and a remote endpoint's own figures from a test server serving
recorded llama-server ``/slots`` + ``/metrics`` and Ollama ``/api/ps`` answers ("not offered"
by one that has none), asked only while the panel is visible."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.app_fixtures import chat, make_app, pilot_test, wait_for
from tests.test_monitor_remote import LLAMA_METRICS, LLAMA_SLOTS, OLLAMA_PS
from tests.test_rpc_worker import Worker
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.engine.protocol import LoadParams
from tui.engine.scripted import ScriptedEngine
from tui.models.endpoints import Endpoint
from tui.monitor.elsewhere import ElsewhereSample, rows, sample_elsewhere
from tui.rpc.probe import WorkerStatus
from tui.session.choice import ResolvedModel
from tui.store import EndpointModel, LocalModel

RECORDED: dict[str, dict[str, str]] = {
    "llama-server": {"/metrics": LLAMA_METRICS, "/slots": json.dumps(LLAMA_SLOTS)},
    "ollama": {"/api/ps": json.dumps(OLLAMA_PS)},
    "bare": {},
}


class RecordedServer:
    """Serves one kind of server's recorded answers on loopback and counts the questions."""

    def __init__(self, kind: str) -> None:
        answers = RECORDED[kind]
        self.kind = kind
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.append(self.path)
                body = answers.get(self.path)
                data = (body if body is not None else "not found").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorded(request: pytest.FixtureRequest) -> Iterator[RecordedServer]:
    server = RecordedServer(request.param)
    yield server
    server.close()


def body(panel: MonitorPanel) -> str:
    return str(panel.query_one("#monitor-body").render())


def test_rows_say_each_workers_memory_and_state() -> None:
    sample = ElsewhereSample((
        WorkerStatus("10.0.0.2:50052", True, offered_bytes=4 << 30, used_bytes=1536 << 20,
                     busy=True),
        WorkerStatus("10.0.0.3:50052", False, "nothing listens"),
    ))
    assert rows(sample) == [("rpc", "10.0.0.2:50052"), ("", "1.5 GiB/4.0 GiB serving"),
                            ("rpc", "10.0.0.3:50052"), ("", "gone (not answering)")]


@pytest.mark.parametrize("recorded", ["bare"], indirect=True)
def test_a_server_without_figures_is_not_offered(recorded: RecordedServer) -> None:
    assert rows(sample_elsewhere((), recorded.url)) == [("server", "figures not offered")]


async def _app_on(pilot: Any, app: Any, model: ResolvedModel) -> MonitorPanel:
    app.session.adopt(model, ScriptedEngine("ok"), ScriptedEngine("ok").load())
    panel: MonitorPanel = chat(app).query_one(MonitorPanel)
    return panel


@pilot_test
async def test_the_monitor_shows_each_rpc_workers_memory_and_state(tmp_path: Path) -> None:
    worker = Worker("--mem", "1")
    try:
        app = make_app(tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.model_state == "ready")
            model = ResolvedModel(
                LocalModel("a.gguf", "a"), "a.gguf#rpc", "a",
                params=LoadParams(model_path="a.gguf", rpc_servers=(worker.address,)))
            panel = await _app_on(pilot, app, model)
            await wait_for(pilot, lambda: worker.address in body(panel), timeout=15)
            await wait_for(pilot, lambda: "/1.0 GiB idle" in body(panel), timeout=15)
            used = panel.elsewhere.workers[0].used_bytes if panel.elsewhere else 0
            assert used > 10 << 20  # the worker's own llama.cpp server, measured there
            worker.stop()
            await wait_for(pilot, lambda: "gone (not answering)" in body(panel), timeout=15)
    finally:
        worker.stop()


@pytest.mark.parametrize("recorded", ["llama-server", "ollama"], indirect=True)
@pilot_test
async def test_the_monitor_shows_a_remote_servers_own_figures(
        tmp_path: Path, recorded: RecordedServer) -> None:
    app = make_app(tmp_path)
    endpoint = Endpoint("ep1", "gpu-box", recorded.url)
    model = ResolvedModel(EndpointModel("ep1", "m", "gpu-box"), f"remote:{recorded.url}#m",
                          "m", endpoint=endpoint)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        panel = await _app_on(pilot, app, model)
        if recorded.kind == "llama-server":
            await wait_for(pilot, lambda: "1/2 busy" in body(panel), timeout=15)
            text = body(panel)
            assert "41.2 tok/s" in text and "38%" in text
        else:
            await wait_for(pilot, lambda: "qwen3:8" in body(panel), timeout=15)
            assert "75% GPU" in body(panel)
        # hidden: nothing more is asked
        await pilot.press("f12")
        await pilot.pause(0.3)
        asked = len(recorded.asked)
        await pilot.pause(2.5)
        assert len(recorded.asked) == asked
        await pilot.press("f12")
        await wait_for(pilot, lambda: len(recorded.asked) > asked, timeout=15)

