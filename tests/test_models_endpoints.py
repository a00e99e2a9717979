"""Remote endpoints in the store: add, list, get, remove; the doctor's network list sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.doctor.health import network_facts
from tui.models.endpoints import Endpoint, EndpointError, EndpointLibrary, remote_key
from tui.store import Store


def test_crud_round_trips_through_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        lib = EndpointLibrary(store)
        assert lib.list() == []
        lab = lib.add("lab", " http://10.0.0.5:8080/v1 ", api_key="sk-1", default_model="qwen")
        other = lib.add("", "https://api.example.com")
        assert other.name == "api.example.com"
        assert [e.name for e in lib.list()] == ["lab", "api.example.com"]
        assert lib.get(lab.id) == Endpoint(lab.id, "lab", "http://10.0.0.5:8080/v1", "sk-1",
                                           "qwen")
        assert lab.host == "10.0.0.5:8080"
        assert lib.remove(lab.id) is True
        assert lib.remove(lab.id) is False
        assert [e.id for e in lib.list()] == [other.id]
    with Store.open(tmp_path / "data") as store:  # saved
        assert [e.name for e in EndpointLibrary(store).list()] == ["api.example.com"]


def test_bad_urls_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        lib = EndpointLibrary(store)
        for bad in ("", "ftp://x", "localhost:8080", "http://"):
            with pytest.raises(EndpointError):
                lib.add("x", bad)
        lib.add("lab", "http://10.0.0.5:8080")
        with pytest.raises(EndpointError, match="already"):
            lib.add("lab", "http://10.0.0.6:8080")
        assert len(lib.list()) == 1


def test_rows_written_by_hand_are_read(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        store.set_setting("endpoints", [{"name": "a", "url": "http://10.0.0.5/v1"},
                                        "http://10.0.0.7", {"name": "no url"}, 42])
        names = [(e.name, e.base_url) for e in EndpointLibrary(store).list()]
        assert names == [("a", "http://10.0.0.5/v1"), ("10.0.0.7", "http://10.0.0.7")]


def test_the_doctor_lists_an_added_endpoint(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        lib = EndpointLibrary(store)
        lib.add("lab", "http://10.0.0.5:8080/v1")
        lib.add("here", "http://127.0.0.1:8080/v1")  # on this machine: no network
        uses = network_facts(False, "config", store).uses
        assert [u.host for u in uses] == ["huggingface.co", "10.0.0.5"]
        assert "remote endpoint lab (http://10.0.0.5:8080/v1)" in uses[1].what


def test_remote_keys_name_server_and_model() -> None:
    assert remote_key("http://h:1/v1/", "m") == remote_key("http://h:1/v1", "m")
    assert remote_key("http://h:1/v1", "m") != remote_key("http://h:1/v1", "n")
