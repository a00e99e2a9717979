"""RPC workers chosen by a user: ``lmdesk ask --rpc``, a profile's ``rpc`` field, offline mode
refusing workers on other machines, and the one line an unusable worker gets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_rpc_worker import free_port
from tui.config import Settings
from tui.models.profiles import ProfileError, ProfileLibrary, load_params
from tui.rpc.probe import offline_refusal, parse_workers, probe
from tui.session.choice import resolve
from tui.session.params import LoadOverrides
from tui.store import ProfileModel, Store

ROOT = Path(__file__).resolve().parents[1]


def _lmdesk(*args: str, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    # as from a shell: not the switches an earlier in-process test left in os.environ
    # (LMDESK_OFFLINE_SOURCE=default would make LMDESK_OFFLINE=1 look unsaid)
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("LMDESK_OFFLINE", "LMDESK_OFFLINE_SOURCE")}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**inherited, **(env or {})},
                          cwd=ROOT)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lmdesk: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_worker_lists() -> None:
    assert parse_workers("a:1,b") == ("a:1", "b:50052")
    assert parse_workers(["a:1", "a:1, [::1]:7"]) == ("a:1", "[::1]:7")
    assert parse_workers([]) == ()
    with pytest.raises(ValueError, match="port"):
        parse_workers("a:1,b:x")


def test_a_profile_keeps_its_rpc_workers(tmp_path: Path, smollm: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        library = ProfileLibrary(store)
        profile = library.create("split", str(smollm), rpc=("127.0.0.1:5001", "box:6000"))
        assert library.get("split").rpc == ("127.0.0.1:5001", "box:6000")
        assert load_params(profile).rpc_servers == ("127.0.0.1:5001", "box:6000")
        with pytest.raises(ProfileError, match="RPC workers"):
            library.update(profile.id, rpc=("box:port",))
        edited = library.save(replace(library.get("split"), rpc=()))  # the app's form
        assert edited.rpc == () and library.get("split").rpc == ()
        library.update(profile.id, rpc=("127.0.0.1:5001",))
        resolved = resolve(ProfileModel(profile.id, "split", str(smollm)), settings=Settings(),
                           store=store)
        assert resolved.params is not None
        assert resolved.params.rpc_servers == ("127.0.0.1:5001",)
        assert "rpc=127.0.0.1:5001" in resolved.key  # a split model is an engine of its own
        # --rpc for this run wins over the profile's list
        resolved = resolve(ProfileModel(profile.id, "split", str(smollm)), settings=Settings(),
                           store=store, overrides=LoadOverrides(rpc_servers=("127.0.0.1:9",)))
        assert resolved.params is not None and resolved.params.rpc_servers == ("127.0.0.1:9",)


def test_offline_mode_said_by_the_user_refuses_workers_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.offline import apply_offline_mode, uninstall_guard

    monkeypatch.delenv("LMDESK_OFFLINE", raising=False)
    monkeypatch.delenv("LMDESK_OFFLINE_SOURCE", raising=False)
    try:
        apply_offline_mode(Settings(), None, {})  # offline by default: the user may ask
        assert offline_refusal(["192.168.1.5:50052"]) is None
        apply_offline_mode(Settings(), True, {})  # --offline
        assert offline_refusal(["127.0.0.1:50052", "localhost:7"]) is None
        refusal = offline_refusal(["127.0.0.1:50052", "192.168.1.5:50052"])
        assert refusal is not None and "192.168.1.5:50052" in refusal
        assert "--offline" in refusal and "\n" not in refusal
        # and nothing was contacted: the probe says the same without a connection
        status = probe("192.168.1.5:50052")
        assert not status.reachable and "offline" in status.error
    finally:
        uninstall_guard()


@pytest.mark.parametrize("how", [["--offline"], ["LMDESK_OFFLINE=1"]])
def test_ask_offline_refuses_a_worker_on_another_machine(how: list[str]) -> None:
    env = {"LMDESK_OFFLINE": "1"} if how == ["LMDESK_OFFLINE=1"] else {}
    flags = how if how == ["--offline"] else []
    started = time.monotonic()
    result = _lmdesk(*flags, "ask", "--rpc", "192.168.1.5:50052", "--max-tokens", "4", "hi",
                     env=env)
    line = _one_error_line(result)
    assert "the RPC worker 192.168.1.5:50052 is on another machine" in line
    assert "offline" in line
    assert time.monotonic() - started < 120  # refused before any model loads


def test_ask_with_an_unreachable_or_bad_worker_is_one_line() -> None:
    line = _one_error_line(_lmdesk("ask", "--rpc", f"127.0.0.1:{free_port()}", "hi"))
    assert "RPC worker not usable" in line and "start `lmdesk rpc-worker` there" in line
    line = _one_error_line(_lmdesk("ask", "--rpc", "127.0.0.1:x", "hi"))
    assert line.startswith("lmdesk: error: --rpc:") and "port" in line
