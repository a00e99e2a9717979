"""serve answers each request's errors in the language its Accept-Language asks for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serve_helpers import RecordingEngine, chat_body, request
from tui import i18n
from tui.serve import ApiServer, EnginePool


@pytest.fixture
def server() -> Iterator[ApiServer]:
    pool = EnginePool(queue_depth=1)
    engine = RecordingEngine("Hola.")
    engine.load()
    pool.register("fast", engine)
    api = ApiServer(pool, "127.0.0.1", 0).start()
    yield api
    api.stop()


def test_errors_follow_accept_language(server: ApiServer) -> None:
    spanish = {"Accept-Language": "es-AR,es;q=0.9,en;q=0.5"}
    status, _headers, body = request(server.port, "GET", "/v1/nothing", headers=spanish)
    assert status == 404
    assert body["error"]["message"] == "no existe ese endpoint: GET /v1/nothing"
    status, _headers, body = request(server.port, "GET", "/v1/nothing",
                                     headers={"Accept-Language": "en-US"})
    assert status == 404
    assert body["error"]["message"] == "no such endpoint: GET /v1/nothing"
    status, _headers, body = request(server.port, "GET", "/v1/nothing")
    assert body["error"]["message"] == "no such endpoint: GET /v1/nothing"  # no header: English


def test_a_spanish_request_leaves_the_others_english(server: ApiServer) -> None:
    status, _headers, body = request(server.port, "POST", "/v1/chat/completions",
                                     chat_body(model="fast"), headers={"Accept-Language": "es"})
    assert status == 200 and body["choices"][0]["message"]["content"]
    assert i18n.current_language().code == "en"  # the server's process language is untouched
    status, _headers, body = request(server.port, "PUT", "/v1/models",
                                     headers={"Accept-Language": "es"})
    assert status == 405 and body["error"]["message"] == "PUT no está permitido en /models"
