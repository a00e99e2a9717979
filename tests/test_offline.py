"""Offline mode: the switch, the in-process socket guard and the door a download opens."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tui import offline
from tui.config import Settings
from tui.offline import (
    OfflineError,
    allow_network,
    apply_offline_mode,
    decide_offline,
    install_guard,
    uninstall_guard,
)

MESSAGE = (
    "offline mode: refused a connection to huggingface.co:443 "
    "(turn it off with --online or LMDESK_OFFLINE=0)"
)


@pytest.fixture
def guard() -> Iterator[None]:
    install_guard()
    yield
    uninstall_guard()


def test_flag_beats_environment_beats_config() -> None:
    assert decide_offline(True, False, {"LMDESK_OFFLINE": "1"})[:2] == (False, "flag")
    assert decide_offline(True, None, {"LMDESK_OFFLINE": "0"})[:2] == (False, "environment")
    assert decide_offline(False, None, {"LMDESK_OFFLINE": "yes"})[:2] == (True, "environment")
    assert decide_offline(False, None, {})[:2] == (False, "config")
    assert decide_offline(True, None, {})[:2] == (True, "config")
    off, source, notes = decide_offline(True, None, {"LMDESK_OFFLINE": "maybe"})
    assert (off, source) == (True, "config") and "maybe" in notes[0]


def test_apply_sets_the_libraries_switches_and_the_guard() -> None:
    env: dict[str, str] = {}
    try:
        state = apply_offline_mode(Settings(), None, env)
        assert state.offline and state.source == "default" and not state.strict
        assert offline.guard_installed()
        assert env["HF_HUB_OFFLINE"] == "1" and env["LMDESK_OFFLINE"] == "1"
        assert env["HF_HUB_DISABLE_TELEMETRY"] == "1" and env["DO_NOT_TRACK"] == "1"
        state = apply_offline_mode(Settings(), False, env)  # --online
        assert not state.offline and not offline.guard_installed()
        assert "HF_HUB_OFFLINE" not in env and env["LMDESK_OFFLINE"] == "0"
        assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"  # telemetry stays off online too
    finally:
        uninstall_guard()


@pytest.mark.usefixtures("guard")
def test_lookup_and_connect_are_refused_with_the_message() -> None:
    with pytest.raises(OfflineError) as caught:
        socket.getaddrinfo("huggingface.co", 443)
    assert str(caught.value) == MESSAGE
    with pytest.raises(OfflineError, match=r"refused a connection to huggingface\.co:443"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s, pytest.raises(OfflineError, match=r"203\.0\.113\.7:80"):
        s.connect(("203.0.113.7", 80))
    assert "203.0.113.7:80" in offline.refused()


@pytest.mark.usefixtures("guard")
def test_loopback_stays_open() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            accepted.append(conn.recv(16))

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(("localhost", port), timeout=5) as c:
        c.sendall(b"hi")
    t.join(5)
    server.close()
    assert accepted == [b"hi"]


@pytest.mark.usefixtures("guard")
def test_allow_network_opens_the_door_for_its_own_host_only() -> None:
    with allow_network("download", hosts=["203.0.113.9"]) as opened:
        assert opened == ["203.0.113.9"]
        socket.getaddrinfo("203.0.113.9", 443)  # numeric: no DNS needed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with s, pytest.raises(OSError) as caught:  # our guard lets it through to the test guard
            s.connect(("203.0.113.9", 443))
        assert not isinstance(caught.value, OfflineError)
        assert "test network guard" in str(caught.value)
        with pytest.raises(OfflineError):  # any other host: still refused
            socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(OfflineError):  # closed again afterwards
        socket.getaddrinfo("203.0.113.9", 443)
    with pytest.raises(ValueError), allow_network("no host named"):
        pass


@pytest.mark.usefixtures("guard")
def test_allow_network_takes_the_host_from_a_url() -> None:
    with allow_network("https://203.0.113.10:8443/v1/chat/completions") as opened:
        assert opened == ["203.0.113.10"]
        socket.getaddrinfo("203.0.113.10", 8443)
