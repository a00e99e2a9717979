"""A remote server's own figures, from recorded llama-server, Ollama and vLLM answers served on
loopback, and "not offered" from a server that has none."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tui.monitor.remote import fetch, parse_prometheus

LLAMA_METRICS = """# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 812.5
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 41.25
llamacpp:kv_cache_usage_ratio 0.375
llamacpp:requests_processing 1
llamacpp:requests_deferred 2
"""
LLAMA_SLOTS = [{"id": 0, "is_processing": True, "n_ctx": 8192},
               {"id": 1, "is_processing": False, "n_ctx": 8192}]
OLLAMA_PS = {"models": [{"name": "qwen3:8b", "size": 6_000_000_000,
                         "size_vram": 4_500_000_000, "expires_at": "2026-12-01T22:00:00Z"}]}
VLLM_METRICS = """vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="m"} 1.0
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
vllm:avg_generation_throughput_toks_per_s{model_name="m"} 120.0
"""

ANSWERS: dict[str, dict[str, tuple[int, str]]] = {
    "llama-server": {"/metrics": (200, LLAMA_METRICS), "/slots": (200, json.dumps(LLAMA_SLOTS))},
    "ollama": {"/api/ps": (200, json.dumps(OLLAMA_PS))},
    "vllm": {"/metrics": (200, VLLM_METRICS)},
    "bare": {},
}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    answers = ANSWERS[request.param]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path, (404, "not found"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_prometheus_text_sums_label_sets() -> None:
    text = 'a{x="1"} 2\na{x="2"} 3\n# comment\nb 1e3\nbad line\nc NaN\n'
    assert parse_prometheus(text) == {"a": 5.0, "b": 1000.0}


@pytest.mark.parametrize("server", ["llama-server"], indirect=True)
def test_llama_server_figures(server: str) -> None:
    figures = fetch(server)
    assert figures.server == "llama-server"
    rows = dict(figures.rows)
    assert rows == {"slots": "1/2 busy", "srv gen": "41.2 tok/s", "srv pp": "812 tok/s",
                    "srv kv": "38%", "queued": "2"}


@pytest.mark.parametrize("server", ["ollama"], indirect=True)
def test_ollama_figures(server: str) -> None:
    figures = fetch(server)
    assert figures.server == "ollama"
    assert dict(figures.rows) == {"loaded": "1", "qwen3:8": "5.6 GiB, 75% GPU"}


@pytest.mark.parametrize("server", ["vllm"], indirect=True)
def test_vllm_figures(server: str) -> None:
    figures = fetch(server)
    assert figures.server == "vllm"
    assert dict(figures.rows) == {"reqs": "3 running, 1 waiting", "srv kv": "50%",
                                  "srv gen": "120.0 tok/s"}


@pytest.mark.parametrize("server", ["bare"], indirect=True)
def test_a_server_without_figures_offers_none(server: str) -> None:
    figures = fetch(server)
    assert not figures.offered and figures.error == ""


def test_an_unreachable_server_is_one_line() -> None:
    figures = fetch("http://127.0.0.1:9/v1", timeout=0.5)
    assert not figures.offered and "127.0.0.1:9" in figures.error
