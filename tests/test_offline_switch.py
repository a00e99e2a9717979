"""Every way of saying offline goes through one switch (issue 22.5): `--offline`,
LMDESK_OFFLINE=1 and `offline = true` in config.toml each keep `models pull` from opening
anything, not even a name lookup; said by no one (the default), a download is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Under the offline guard (it wraps these, so only what it lets through is recorded): every
# name lookup and connection to another machine, refused with an OSError once written down.
RECORDER = """
import atexit, json, os, socket
attempts = []
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
LOCAL = ("localhost", "127.0.0.1", "::1", "")
def getaddrinfo(host, *args, **kwargs):
    if str(host) not in LOCAL:
        attempts.append(["getaddrinfo", str(host)])
        raise OSError("recorded: no network in this test")
    return real_getaddrinfo(host, *args, **kwargs)
def connect(self, address):
    if isinstance(address, tuple) and str(address[0]) not in LOCAL:
        attempts.append(["connect", str(address[0])])
        raise OSError("recorded: no network in this test")
    return real_connect(self, address)
socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
atexit.register(lambda: open(os.environ["ATTEMPTS"], "w").write(json.dumps(attempts)))
"""


def _pull(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None,
          config: str = "") -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(RECORDER)
    conf = tmp_path / "config"
    conf.mkdir(exist_ok=True)
    (conf / "config.toml").write_text(config)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_HUB_OFFLINE", "LMDESK_OFFLINE"))}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
               ATTEMPTS=str(tmp_path / "attempts.json"), LMDESK_CONFIG_DIR=str(conf),
               HF_HOME=str(tmp_path / "hf"), **(env_extra or {}))
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args, "models", "pull", "smollm2-360m"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    attempts = json.loads((tmp_path / "attempts.json").read_text())
    return result, attempts


@pytest.mark.parametrize("how", ["flag", "environment", "config"])
def test_each_way_of_saying_offline_opens_nothing(tmp_path: Path, how: str) -> None:
    result, attempts = _pull(
        tmp_path, *(["--offline"] if how == "flag" else []),
        env_extra={"LMDESK_OFFLINE": "1"} if how == "environment" else None,
        config="offline = true\n" if how == "config" else "")
    assert attempts == [], attempts
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "offline" in lines[0], result.stderr


def test_said_by_no_one_a_download_may_use_the_network(tmp_path: Path) -> None:
    """The control: the recorder does see a download's first lookup when it is allowed."""
    result, attempts = _pull(tmp_path)
    assert attempts and attempts[0][1].endswith("huggingface.co"), (attempts, result.stderr)


def test_what_decided_it_survives_the_switch_it_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply_offline_mode sets LMDESK_OFFLINE for the processes it starts; a later look (the
    app's doctor, a model worker) must not take that for the user's own (issue 21.15)."""
    from tui.config import Settings
    from tui.offline import apply_offline_mode, decide_offline, uninstall_guard

    monkeypatch.delenv("LMDESK_OFFLINE", raising=False)
    try:
        state = apply_offline_mode(Settings(), None)
        assert (state.offline, state.source, state.strict) == (True, "default", False)
        assert decide_offline(True, None, os.environ)[:2] == (True, "default")
        configured = Settings(offline=True, from_file=frozenset({"offline"}))
        state = apply_offline_mode(configured, None, {})
        assert (state.source, state.strict) == ("config", True)
    finally:
        uninstall_guard()


def test_the_doctor_says_what_decided_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMDESK_OFFLINE")}
    env.update(LMDESK_CONFIG_DIR=str(tmp_path / "c"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "tui.cli", "doctor"], capture_output=True,
                            text=True, timeout=120, env=env, cwd=ROOT)
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith(
        "offline"))
    assert line.rstrip().endswith("(from the default)"), line
