"""The real `lmdesk` command in a real terminal (tmux): type, read the reply, quit, come back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, env=self.env,
        )
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args[:1])} failed ({result.returncode}): "
                                 f"{result.stderr.strip()}")
        return result.stdout

    def start(self, command: str, width: int = 160, height: int = 40) -> None:
        args = ("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), command)
        try:
            self.run(*args)
        except AssertionError:
            # tmux's server occasionally fails its very first start on a busy machine
            time.sleep(1.0)
            self.run(*args)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "main", *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-t", "main", "-p")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"timed out; the screen was:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(
            ["tmux", "-L", self.name, "has-session", "-t", "main"], capture_output=True,
            env=self.env,
        ).returncode == 0


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    env = dict(os.environ)
    env.update(TERM="xterm-256color", LMDESK_DATA_DIR=str(tmp_path / "data"),
               LMDESK_CONFIG_DIR=str(tmp_path / "config"), LMDESK_CACHE_DIR=str(tmp_path / "cache"))
    # every Python process of the run (the app and its model worker) gets the socket-level
    # guard through sitecustomize and leaves its pid behind: the app works with no network
    from tests.test_offline_e2e import SITECUSTOMIZE

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "pids").mkdir()
    root = Path(__file__).resolve().parents[1]
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(root)]), LMDESK_OFFLINE="1",
               GUARDED_PIDS=str(tmp_path / "pids"))
    env.pop("HF_HUB_OFFLINE", None)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("max_tokens = 48\ntemperature = 0.0\n")
    session = Tmux(f"lmdesk-test-{uuid.uuid4().hex[:8]}", env)
    yield session
    subprocess.run(["tmux", "-L", session.name, "kill-server"], capture_output=True, env=env)


def _lmdesk_command() -> str:
    exe = Path(sys.executable).with_name("lmdesk")
    assert exe.exists(), f"the lmdesk command is not installed next to {sys.executable}"
    # the shell stays after lmdesk ends so the test can read what it printed
    return f"{exe}; echo LMDESK-EXITED-$?; sleep 60"


@dataclass(frozen=True)
class Words:
    """What the screen says, in the language the test runs the app in."""

    env: dict[str, str]
    welcome: str
    offline: str
    prompt: str
    writing: str
    question: str
    tail: str


ENGLISH = Words({}, "Welcome to lmdesk", "Nothing leaves this machine", "Ask anything",
                "Writing the reply", "What colour is the sky? Answer in one sentence.",
                "Answer in one sentence.")
SPANISH = Words({"LANG": "es_AR.UTF-8", "LC_CTYPE": "C.UTF-8"},
                "Te damos la bienvenida a lmdesk", "Nada sale de esta máquina",
                "Pregunta lo que quieras", "Escribiendo la respuesta",
                "De que color es el cielo? Responde en una frase.", "Responde en una frase.")


@pytest.mark.parametrize("words", [ENGLISH, SPANISH], ids=["en", "es_AR"])
def test_chat_quit_and_come_back(tmux: Tmux, tmp_path: Path, words: Words) -> None:
    for name in ("LC_ALL", "LC_MESSAGES"):
        tmux.env.pop(name, None)
    tmux.env.update(words.env)
    tmux.start(_lmdesk_command())
    # the first start greets the user once; esc goes to the chat
    tmux.wait_for(lambda s: words.welcome in s and words.offline in s)
    tmux.keys("Escape")
    tmux.wait_for(lambda s: words.prompt in s and words.welcome not in s)
    tmux.keys(words.question)
    tmux.wait_for(lambda s: words.tail in s)
    tmux.keys("Enter")
    # the reply arrives, then its stats line stays under it when it is done
    screen = tmux.wait_for(
        lambda s: "tok/s" in s and words.writing not in s and "waiting" not in s,
        timeout=120,
    )
    assert words.question.split("?")[0] in screen
    assert "Traceback" not in screen
    tmux.keys("C-q")
    screen = tmux.wait_for(lambda s: "LMDESK-EXITED-" in s, timeout=30)
    assert "LMDESK-EXITED-0" in screen, screen
    assert "Traceback" not in screen
    # start again: the conversation is still there, with the question and the reply
    tmux.run("kill-server")
    tmux.start(_lmdesk_command())
    # (the title is in the header at once: wait for the messages themselves)
    screen = tmux.wait_for(lambda s: words.tail in s.split("\n", 1)[-1] and "tok/s" in s)
    assert words.welcome not in screen  # shown once only
    tmux.keys("C-q")
    tmux.wait_for(lambda s: "LMDESK-EXITED-0" in s, timeout=30)
    guarded = list((tmp_path / "pids").iterdir())
    assert len(guarded) >= 4, "the app and its model worker ran with the network blocked, twice"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


def test_app_serving_survives_a_client_that_hangs_up(tmux: Tmux, tmp_path: Path) -> None:
    """alt+a during a long reply, then clients that close before reading: the app, its reply
    and the terminal all survive (the app used to die of SIGPIPE, rc 141)."""
    import json
    import urllib.request

    from tests.test_serve_hangup import hang_up_many

    port = _free_port()
    (tmp_path / "config" / "config.toml").write_text(
        f"max_tokens = 150\ntemperature = 0.0\nserve_port = {port}\n")
    tmux.start(_lmdesk_command(), width=120, height=40)
    tmux.wait_for(lambda s: "Welcome to lmdesk" in s)
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Ask anything" in s and "Loading" not in s, timeout=90)
    tmux.keys("Write a very long story about a dragon and a knight, at least 500 words.")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "tokens ·" in s and "tok/s" in s, timeout=60)
    tmux.keys("M-a")
    _wait_listening(port)
    hang_up_many(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
        assert json.load(resp)["data"]
    assert tmux.alive()
    screen = tmux.screen()
    assert "LMDESK-EXITED" not in screen and "Traceback" not in screen
    # the reply goes on to its end and keeps its figures
    screen = tmux.wait_for(lambda s: "Writing the reply" not in s and "ttft" in s, timeout=300)
    tmux.keys("C-q")
    screen = tmux.wait_for(lambda s: "LMDESK-EXITED-" in s, timeout=30)
    assert "LMDESK-EXITED-0" in screen, screen
    assert "Traceback" not in screen
    from tui.store import Store

    with Store.open(tmp_path / "data", read_only=True) as store:
        cid = store.last_conversation_id()
        assert cid is not None
        reply = store.messages(cid)[-1]
    assert reply.role == "assistant" and reply.status == "done"
    assert len(reply.content.split()) > 30


def _tokens_shown(screen: str) -> int:
    """The token count on the live reply's progress line ("model · 42 tokens · 9.1 tok/s")."""
    import re

    found = re.findall(r"· (\d+) tokens ·", screen)
    return max((int(n) for n in found), default=0)


def test_leaving_a_streaming_conversation_keeps_the_reply(tmux: Tmux, tmp_path: Path) -> None:
    """ctrl+n well into a long reply: no crash, and the reply is kept whole (not "The")."""
    (tmp_path / "config" / "config.toml").write_text("max_tokens = 600\ntemperature = 0.0\n")
    tmux.start(_lmdesk_command(), width=120, height=40)
    tmux.wait_for(lambda s: "Welcome to lmdesk" in s)
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Ask anything" in s and "Loading" not in s, timeout=90)
    tmux.keys("Write a very long story about a dragon and a knight, at least 500 words.")
    tmux.keys("Enter")
    # well into the reply (a count, not a time: on a busy machine the model is slower)
    tmux.wait_for(lambda s: _tokens_shown(s) >= 30, timeout=120)
    tmux.keys("C-n")
    screen = tmux.wait_for(lambda s: "was stopped when you left it" in s, timeout=30)
    assert "Traceback" not in screen and "LMDESK-EXITED" not in screen
    tmux.keys("C-q")
    screen = tmux.wait_for(lambda s: "LMDESK-EXITED-" in s, timeout=30)
    assert "LMDESK-EXITED-0" in screen, screen
    from tui.store import Store

    with Store.open(tmp_path / "data", read_only=True) as store:
        story = next(m for m in store.list_conversations() if m.message_count == 2)
        reply = store.messages(story.id)[-1]
    assert reply.status == "stopped"
    assert len(reply.content.split()) >= 15, reply.content
