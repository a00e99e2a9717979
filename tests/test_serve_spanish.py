"""serve answers each request's errors in the language its Accept-Language asks for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
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


@pytest.mark.parametrize(("path", "body", "status", "spanish", "english"), [
    ("/v1/chat/completions", chat_body(model="fast", temperature="hot"), 400,
     'temperature debe ser un número; se recibió "hot"', 'temperature must be a number, got "hot"'),
    ("/v1/chat/completions", chat_body(model="fast", max_tokens=0), 400,
     "max_tokens debe ser al menos 1; se recibió 0", "max_tokens must be at least 1, got 0"),
    ("/v1/chat/completions", chat_body(model="nadie"), 404,
     "ningún modelo se llama 'nadie' en este servidor (disponibles: fast)",
     "no model named 'nadie' on this server (available: fast)"),
    ("/v1/completions", {"model": "fast", "prompt": ""}, 400, "prompt está vacío",
     "prompt is empty"),
    ("/v1/responses", {"model": "fast", "input": []}, 400,
     "input debe ser un texto o una lista no vacía de elementos de mensaje",
     "input must be a string or a non-empty list of message items"),
    ("/v1/messages", {"model": "fast", "max_tokens": 8,
                      "messages": [{"role": "robot", "content": "hola"}]}, 400,
     "messages[0].role debe ser user o assistant; se recibió 'robot'",
     "messages[0].role must be user or assistant, got 'robot'"),
    ("/v1/embeddings", {"model": "fast", "input": ["hola", ""]}, 400,
     "input contiene un texto vacío", "input holds an empty string"),
    ("/v1/chat/completions", chat_body(model="fast", tools=[{"type": "function"}]), 400,
     "falta tools[0].function", "tools[0].function is missing"),
])
def test_a_bad_request_is_told_in_spanish(server: ApiServer, path: str, body: dict[str, Any],
                                          status: int, spanish: str, english: str) -> None:
    got, _headers, answer = request(server.port, "POST", path, body,
                                    headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert got == status and answer["error"]["message"] == spanish
    got, _headers, answer = request(server.port, "POST", path, body)
    assert got == status and answer["error"]["message"] == english


def test_the_openai_client_reads_the_spanish_message(server: ApiServer) -> None:
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60,
                           default_headers={"Accept-Language": "es"})
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fast", messages=[])
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "messages debe ser una lista no vacía"
