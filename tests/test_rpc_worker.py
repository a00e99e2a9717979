"""`lmdesk rpc-worker`: llama.cpp's RPC server behind lmdesk's gate, started for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.rpc.gate import admitted, parse_allow
from tui.rpc.probe import is_loopback_address, parse_address, probe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "rpc-worker", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.banner: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.banner.append(line.rstrip())
            if line.lstrip().startswith("use it from"):
                break

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker("--mem", "2")
    yield w
    w.stop()


def test_the_worker_says_what_it_offers_and_answers_status(worker: Worker) -> None:
    text = "\n".join(worker.banner)
    assert f"listening on {worker.address}" in text
    assert "offers 2.0 GiB" in text and "CPU backend" in text
    assert "no authentication" in text  # the security warning is always printed
    status = probe(worker.address, measure=True)
    assert status.reachable, status.error
    assert status.offered_bytes == 2 << 30 and status.backend == "CPU"
    assert status.used_bytes > 0 and not status.busy
    assert status.rtt_ms is not None and status.rtt_ms < 1000
    assert status.bandwidth_mb_s is not None and status.bandwidth_mb_s > 1
    assert worker.stop() == 0


def test_listening_beyond_this_machine_needs_expose_and_an_allow_list() -> None:
    env = {**os.environ}
    for args, expected in [
        (["--host", "0.0.0.0"], "--expose"),
        (["--host", "0.0.0.0", "--expose"], "--allow"),
        (["--allow", "not-an-ip", "--host", "0.0.0.0", "--expose"], "not an address"),
        (["--mem", "-3"], "--mem"),
    ]:
        result = subprocess.run([sys.executable, "-m", "tui.cli", "rpc-worker", *args],
                                capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("lmdesk: error:") and expected in result.stderr
        assert "Traceback" not in result.stderr


def test_the_allow_list() -> None:
    allow = parse_allow(["192.168.1.20", "10.0.0.0/24,fd00::/8"])
    assert admitted("127.0.0.1", []) and admitted("::1", [])
    assert admitted("192.168.1.20", allow) and admitted("10.0.0.77", allow)
    assert admitted("::ffff:10.0.0.5", allow) and admitted("fd00::1", allow)
    assert not admitted("192.168.1.21", allow) and not admitted("8.8.8.8", allow)
    assert not admitted("garbage", allow)


def test_addresses() -> None:
    assert parse_address("host:123") == ("host", 123)
    assert parse_address("host") == ("host", 50052)
    assert parse_address("[::1]:7") == ("::1", 7)
    for bad in ("", ":5", "h:x", "h:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert is_loopback_address("127.0.0.1:50052") and is_loopback_address("localhost")
    assert not is_loopback_address("192.168.1.2:50052")


def test_nothing_listening_is_one_line() -> None:
    status = probe(f"127.0.0.1:{free_port()}")
    assert not status.reachable and "rpc-worker" in status.error


def test_a_plain_port_that_is_not_a_worker(tmp_path: Path) -> None:
    """Something else listens there (not lmdesk's gate): said plainly, never handed to
    llama.cpp (whose client would abort the whole process)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()

    import threading

    threading.Thread(target=answer, daemon=True).start()
    status = probe(f"127.0.0.1:{port}", timeout=2)
    listener.close()
    assert not status.reachable
    assert "does not answer like an lmdesk rpc-worker" in status.error


def test_the_servers_ready_line_comes_on_its_own_pipe() -> None:
    """llama.cpp's server thread writes its own lines to stdout ("Accepted client connection"
    when the readiness check connects), which used to cut our "ready" line in two
    ("Accepted client connectionready") and leave `lmdesk rpc-worker` waiting for ever. The
    line now comes on a descriptor of its own, first and whole."""
    port = free_port()
    status_read, status_write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.rpc.server", f"127.0.0.1:{port}", "1", str(status_write)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        pass_fds=(status_write,))
    os.close(status_write)
    try:
        with os.fdopen(status_read) as status:
            assert status.readline() == "ready\n"
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(30)
    assert b"ready" not in out  # llama.cpp's stdout carries only its own lines
