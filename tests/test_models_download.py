"""Downloads end to end against a local stand-in for the Hub (tests/hub_server.py)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hub_server import HubServer
from tui.models.download import (
    DownloadCancelled,
    DownloadError,
    DownloadProgress,
    NotEnoughDisk,
    Offline,
    download,
    list_gguf_files,
    pick_file,
)
from tui.models.listing import list_models

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
FILE = "smollm2-135m-instruct-q4_1.gguf"


@pytest.fixture
def hub(smollm: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the conftest sets it for every test
    with HubServer() as server:
        server.add(REPO, FILE, smollm)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def gets(hub: HubServer) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]


def test_full_download_lands_in_the_hf_cache_and_is_listed(
    hub: HubServer, smollm: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "hf"
    seen: list[DownloadProgress] = []
    result = download(REPO, FILE, cache_dir=cache, progress=seen.append)
    assert not result.cached and result.size_bytes == smollm.stat().st_size
    assert result.path.read_bytes() == smollm.read_bytes()
    assert cache in result.path.parents
    assert seen[-1].done_bytes == seen[-1].total_bytes == smollm.stat().st_size
    assert seen[-1].fraction == 1.0 and seen[-1].bytes_per_s > 0
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)
    (m,) = list_models(cache_path=tmp_path / "c.json", packaged=False, hf_cache=cache)
    assert (m.source, m.repo_id, m.architecture) == ("hf-cache", REPO, "llama")
    # a second call is answered from the cache, without the network
    before = len(hub.requests)
    again = download(REPO, FILE, cache_dir=cache, offline=True)
    assert again.cached and again.path == result.path and len(hub.requests) == before


def test_a_dropped_connection_is_resumed_with_a_range_request(
    hub: HubServer, smollm: Path, tmp_path: Path
) -> None:
    hub.drop_after[FILE] = 30_000_000
    result = download(REPO, FILE, cache_dir=tmp_path / "hf")
    assert result.path.read_bytes() == smollm.read_bytes()
    first, second = gets(hub)
    assert "Range" not in first[2] and "range" not in first[2]
    ranged = second[2].get("Range") or second[2].get("range") or ""
    assert ranged.startswith("bytes=") and int(ranged[6:].rstrip("-")) > 0


def test_too_little_disk_is_refused_before_downloading(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Usage:
        total, used, free = 10 << 30, (10 << 30) - (50 << 20), 50 << 20

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(NotEnoughDisk, match=r"not enough disk space.*GiB is free"):
        download(REPO, FILE, cache_dir=tmp_path / "hf")
    assert gets(hub) == []


def test_offline_mode_says_no_network_and_sends_nothing(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Offline, match=r"^no network: "):
        download(REPO, FILE, cache_dir=tmp_path / "hf")
    with pytest.raises(Offline, match=r"^no network: "):
        list_gguf_files(REPO)
    assert hub.requests == []


def test_connection_refused_says_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = HubServer().start()
    dead = server.url
    server.stop()  # nothing listens there now
    with pytest.raises(Offline, match=r"^no network: cannot reach"):
        download(REPO, FILE, cache_dir=tmp_path / "hf", endpoint=dead)


def test_cancel_stops_the_download_and_leaves_no_partial_file(
    hub: HubServer, tmp_path: Path
) -> None:
    cancel = threading.Event()

    def on_progress(p: DownloadProgress) -> None:
        if p.done_bytes > 0:
            cancel.set()

    cache = tmp_path / "hf"
    with pytest.raises(DownloadCancelled):
        download(REPO, FILE, cache_dir=cache, progress=on_progress, cancel=cancel)
    leftovers = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20]
    assert leftovers == []


def test_missing_repo_and_file_get_clear_messages(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no repository nobody/nothing"):
        download("nobody/nothing", FILE, cache_dir=tmp_path / "hf")
    with pytest.raises(DownloadError, match=r"has no file nope\.gguf"):
        download(REPO, "nope.gguf", cache_dir=tmp_path / "hf")


def test_repo_listing_and_the_default_pick(hub: HubServer, smollm: Path) -> None:
    hub.add(REPO, "smollm2-135m-instruct-q8_0.gguf", smollm)
    hub.add(REPO, "README.md", smollm)
    files = list_gguf_files(REPO)
    assert [f for f, _ in files] == [FILE, "smollm2-135m-instruct-q8_0.gguf"]
    assert all(size == smollm.stat().st_size for _, size in files)
    assert pick_file(files) == "smollm2-135m-instruct-q8_0.gguf"  # no Q4_K_M: Q8_0 ranks next
    assert pick_file([("a-Q4_K_M.gguf", 5), ("a-Q8_0.gguf", 9)]) == "a-Q4_K_M.gguf"
    assert pick_file([("x-f16.gguf", 9), ("x-q2.gguf", 3)]) == "x-q2.gguf"
    assert pick_file([]) is None


def test_hf_hub_offline_constant_is_restored(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import constants

    before: Any = constants.HF_HUB_OFFLINE
    download(REPO, FILE, cache_dir=tmp_path / "hf")
    assert before == constants.HF_HUB_OFFLINE
