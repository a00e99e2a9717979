"""A client that hangs up before reading its answer costs that connection only.

These run the real ``lmdesk`` entry point (``main()``), where the process-wide SIGPIPE
disposition is decided: a server that dies on the first half-closed connection is the bug.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _lmdesk(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )


def hang_up(port: int, path: str, *, reset: bool) -> None:
    """Send one request and close without reading (``reset``: with an RST, at once)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    sock.close()


def hang_up_many(port: int) -> None:
    for path in ("/v1/health", "/v1/models", "/no/such/path"):
        for reset in (False, True, False, True):
            hang_up(port, path, reset=reset)
    time.sleep(0.5)  # let the server write into the closed sockets


@pytest.mark.parametrize("key", [None, "sekret"])
def test_serve_survives_clients_that_hang_up(smollm: Path, key: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LMDESK_API_KEY"}
    if key:
        env["LMDESK_API_KEY"] = key
    proc = _lmdesk("serve", "--port", "0", "--model", str(smollm), "--quiet", env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("lmdesk serve: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        hang_up_many(port)
        assert proc.poll() is None, f"serve died: {proc.returncode} {proc.stderr.read()}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        req = urllib.request.Request(f"{url}/models", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        assert smollm.stem in ids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ask_piped_into_head_ends_quietly(smollm: Path) -> None:
    """The one broken pipe that should end a command: stdout closed by ``head``."""
    shell = (
        f"{sys.executable} -m tui.cli ask --model {smollm} --max-tokens 200 --temperature 0 "
        "'Count from one to fifty in words, one per line.' | head -c 5"
    )
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"],
                            capture_output=True, text=True, timeout=120)
    assert len(result.stdout) == 5
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert "Exception ignored" not in result.stderr
