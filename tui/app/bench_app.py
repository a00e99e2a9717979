"""``lmdesk bench app``: what the full-screen app costs the model, in a real terminal.

The real ``lmdesk`` runs in a pseudo-terminal of the given size (its output read as fast as a
terminal would, and thrown away), on the default model at temperature 0, against ``lmdesk ask``
on the same prompt, alternated. For each kind of reply (prose, a long list, code) it prints

    ratio app/ask generation tokens/s = X     (target >= 0.95)
    app process CPU per streamed token = Y ms (target <= 1 ms)

The rates are llama.cpp's own counters, stored with each reply; the CPU is the whole app
process (every thread: UI, terminal driver, input reader, monitor, garbage collector), not the
model worker's, from the first token shown to the reply saved; what the reply costs besides
(the prompt shown, the reply set up, the finished message drawn whole) is printed apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

PROMPTS: dict[str, str] = {
    "prose": "Write a long story about a dragon and a knight, at least 400 words.",
    "list": "List 60 fruits, one per line, numbered, with one short remark for each.",
    "code": "Write a complete Python module with a class for a to-do list: add, remove, "
            "list, save to JSON and load from JSON, with docstrings and type hints, a "
            "command-line interface using argparse, and unit tests.",
}


@dataclass
class Run:
    tokens_per_s: float
    tokens: int
    cpu_s: float = 0.0
    """The app process's CPU from Enter to the reply saved as done."""
    streaming_cpu_s: float = 0.0
    """Of it, from the first token shown to the end."""

    @property
    def cpu_ms_per_token(self) -> float:
        return self.streaming_cpu_s * 1000 / self.tokens if self.tokens else 0.0

    @property
    def reply_overhead_ms(self) -> float:
        """CPU spent on the reply outside its streaming: the prompt shown, the reply set up,
        and the finished message drawn whole and saved."""
        return (self.cpu_s - self.streaming_cpu_s) * 1000


def _lmdesk() -> list[str]:
    exe = Path(sys.executable).with_name("lmdesk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TERM="xterm-256color", LMDESK_DATA_DIR=str(root / "data"),
               LMDESK_CONFIG_DIR=str(root / "config"), LMDESK_CACHE_DIR=str(root / "cache"),
               COLORTERM="truecolor")
    return env


def ask_run(prompt: str, max_tokens: int, root: Path, *, tries: int = 2) -> Run:
    """One reply from ``lmdesk ask``; asked again once if it printed no answer (seen once in
    about forty runs, right after the app had quit: exit status 0, nothing on stdout)."""
    for attempt in range(1, tries + 1):
        result = subprocess.run(
            [*_lmdesk(), "ask", "--json", "--no-memory", "--temperature", "0", "--max-tokens",
             str(max_tokens), prompt], capture_output=True, text=True, env=_env(root),
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"lmdesk ask failed: {result.stderr.strip()[-300:]}")
        try:
            stats = json.loads(result.stdout)["stats"]
            return Run(float(stats["generation_tokens_per_s"]), int(stats["generated_tokens"]))
        except (ValueError, KeyError, TypeError):
            if attempt == tries:
                raise RuntimeError(
                    f"lmdesk ask printed no answer {tries} times (exit status 0; stderr: "
                    f"{result.stderr.strip()[-200:] or 'empty'})") from None
            time.sleep(1.0)
    raise ValueError("tries must be at least 1")


class _Terminal:
    """A pty of ``cols`` x ``rows`` whose output is drained on a thread, as a terminal does."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int, rows: int) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the app
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.received = 0
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.received += len(data)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.kill(self.pid, 9)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def _last_reply(data_dir: Path) -> dict[str, object] | None:
    """The newest assistant message in the data folder (read without the store's lock)."""
    newest: tuple[float, dict[str, object]] | None = None
    for path in (data_dir / "conversations").glob("*.json"):
        try:
            docs = json.loads(path.read_text()).get("messages", {})
        except (OSError, ValueError):
            continue
        for doc in docs.values():
            if doc.get("role") == "assistant" and (newest is None or doc["created"] > newest[0]):
                newest = (float(doc["created"]), doc)
    return newest[1] if newest else None


def app_run(prompt: str, max_tokens: int, root: Path, cols: int, rows: int) -> Run:
    """One reply in the real app: start it fresh, type the prompt, wait until the reply is
    saved as done, and read its figures and the app process's CPU time."""
    shutil.rmtree(root / "data", ignore_errors=True)
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "config.toml").write_text(
        f"max_tokens = {max_tokens}\ntemperature = 0.0\n")
    term = _Terminal(_lmdesk(), _env(root), cols, rows)
    try:
        app = psutil.Process(term.pid)
        _wait(lambda: len(app.children()) >= 2, 120, "the model worker to start")
        time.sleep(2.0)  # the model loads; the welcome shows once
        term.type("\x1b")  # close the welcome
        time.sleep(0.5)
        term.type(prompt)
        time.sleep(0.3)
        before = _cpu(app)
        term.type("\r")
        reply: dict[str, object] | None = None
        streaming_from: float | None = None

        def done() -> bool:
            nonlocal reply, streaming_from
            reply = _last_reply(root / "data")
            finished = reply is not None and reply.get("status") == "done"
            if reply is not None and streaming_from is None and not finished:
                streaming_from = _cpu(app)  # the first token is shown (and saved)
            return finished

        _wait(done, 600, "the reply")
        after = _cpu(app)
        if streaming_from is None:  # too short to be seen streaming: all of it counts
            streaming_from = before
        assert reply is not None
        stats = reply.get("stats")
        assert isinstance(stats, dict)
        return Run(float(stats["generation_tokens_per_s"]), int(stats["generated_tokens"]),
                   after - before, after - streaming_from)
    finally:
        term.type("\x11")  # ctrl+q
        time.sleep(0.5)
        term.close()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_app_bench(out: Callable[[str], None] = print, *, reps: int = 3, max_tokens: int = 400,
                  sizes: tuple[tuple[int, int], ...] = ((120, 40), (80, 24)),
                  kinds: tuple[str, ...] = tuple(PROMPTS)) -> dict[str, float]:
    """Alternate app and ask runs; print and return the ratios and CPU per token."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lmdesk-bench-app-") as tmp:
        root = Path(tmp)
        for cols, rows in sizes:
            for kind in kinds:
                prompt = PROMPTS[kind]
                apps: list[Run] = []
                asks: list[Run] = []
                for _ in range(reps):
                    asks.append(ask_run(prompt, max_tokens, root))
                    apps.append(app_run(prompt, max_tokens, root, cols, rows))
                ratio = statistics.median(
                    a.tokens_per_s / b.tokens_per_s for a, b in zip(apps, asks, strict=True)
                    if b.tokens_per_s)
                cpu = statistics.median(a.cpu_ms_per_token for a in apps)
                overhead = statistics.median(a.reply_overhead_ms for a in apps)
                key = f"{kind}_{cols}x{rows}"
                results[f"ratio_{key}"] = ratio
                results[f"cpu_ms_per_token_{key}"] = cpu
                results[f"reply_overhead_ms_{key}"] = overhead
                app_rate = statistics.median(a.tokens_per_s for a in apps)
                ask_rate = statistics.median(b.tokens_per_s for b in asks)
                out(f"{kind} at {cols}x{rows}: app {app_rate:.1f} vs ask {ask_rate:.1f} tok/s "
                    f"({apps[0].tokens} tokens)")
                out(f"  ratio app/ask generation tokens/s = {ratio:.3f}   (target >= 0.95)")
                out(f"  app process CPU per streamed token = {cpu:.2f} ms   (target <= 1 ms)")
                out(f"  app process CPU per reply besides = {overhead:.0f} ms   (prompt shown, "
                    "reply set up, drawn whole and saved)")
    return results
