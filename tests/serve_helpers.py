"""Helpers for the serve and remote tests: a recording scripted engine and raw HTTP calls."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tui.engine.protocol import ChatMessage, Done, EngineEvent, SamplingParams
from tui.engine.scripted import ScriptedEngine


class RecordingEngine(ScriptedEngine):
    """A scripted engine that remembers cancels and each reply's Done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancels = 0
        self.dones: list[Done] = []
        self.started = threading.Event()
        self.unloads = 0

    def cancel(self) -> None:
        self.cancels += 1
        super().cancel()

    def unload(self) -> None:
        self.unloads += 1
        super().unload()

    def generate(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingParams,
        *,
        raw_prompt: str | None = None,
        **kwargs: Any,
    ) -> Iterator[EngineEvent]:
        self.started.set()
        for event in super().generate(messages, sampling, raw_prompt=raw_prompt, **kwargs):
            if isinstance(event, Done):
                self.dones.append(event)
            yield event


def slow_engine(n_tokens: int = 60, delay_s: float = 0.03, name: str = "slow") -> RecordingEngine:
    engine = RecordingEngine(tokens=[f" t{i}" for i in range(n_tokens)], delay_s=delay_s, name=name)
    engine.load()
    return engine


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: (status, headers, decoded JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, data, all_headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            decoded: Any = json.loads(raw)
        except ValueError:
            decoded = raw
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, decoded
    finally:
        conn.close()


def chat_body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}


def raw_post(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> socket.socket:
    """Send a request on a bare socket (to hang up on it later)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    sock.sendall(head + data)
    return sock


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
