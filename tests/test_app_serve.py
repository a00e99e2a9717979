"""Pilot test of "serve while I chat": the API on loopback shares the loaded model."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.app_fixtures import make_app, pilot_test, send, wait_for


@pilot_test
async def test_serve_while_chatting(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="hi from the chat")
    app.api_port = 0  # a free port
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.press("alt+a")
        server = app.api_server
        assert server is not None and server.running and server.host == "127.0.0.1"
        with urllib.request.urlopen(f"{server.url}/models", timeout=5) as answer:
            body = json.loads(answer.read())
        assert [m["id"] for m in body["data"]] == ["scripted"]
        body = json.dumps({"model": "scripted", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(f"{server.url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            reply = json.loads(answer.read())
        assert reply["choices"][0]["message"]["content"]
        await send(pilot, "and chat meanwhile")  # the chat still works, taking turns
        assert server.stats.snapshot().requests >= 2
        await pilot.press("alt+a")
        assert app.api_server is None
        await wait_for(pilot, lambda: not server.running)
