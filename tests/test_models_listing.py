"""The local model list from real GGUF headers: packaged, HF cache, folders, bad files, speed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import tui.models.listing as listing
from tui.engine.gguf import read_header
from tui.models.listing import find_model, hf_cache_dir, hf_cache_models, list_models

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hf_cache(root: Path, repo: str, filename: str, model: Path) -> Path:
    """The hub cache layout: blobs/<etag> (a hardlink: no disk cost), snapshot symlink, ref."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    blob = folder / "blobs" / "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    os.link(model, blob)
    snap = folder / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / filename).symlink_to(os.path.relpath(blob, snap))
    return snap / filename


def test_packaged_models_are_described_from_their_headers(
    smollm: Path, gemma: Path, tmp_path: Path
) -> None:
    models = list_models(cache_path=tmp_path / "c.json", hf_cache=False)
    by_name = {m.name: m for m in models}
    s = by_name["smollm2-135m"]
    assert (s.source, s.architecture, s.quantization) == ("packaged", "llama", "Q4_1")
    assert s.n_params == 134_515_008 and s.n_layers == 30 and s.context_length == 8192
    assert s.size_bytes == smollm.stat().st_size and s.has_chat_template and s.readable
    g = by_name["gemma3-270m"]
    assert (g.architecture, g.quantization, g.n_layers, g.context_length) == (
        "gemma3", "Q4_K_M", 18, 32768)
    assert not g.has_chat_template  # a base model
    assert g.shape is not None and g.shape.sliding_window == 512 and g.shape.swa_layers == 15


def test_a_damaged_gguf_is_listed_as_unreadable_and_the_rest_still_listed(
    smollm: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    os.link(smollm, folder / "good.gguf")
    (folder / "notgguf.gguf").write_bytes(b"PK\x03\x04 this is a zip")
    with smollm.open("rb") as fh:
        (folder / "truncated.gguf").write_bytes(fh.read(3_000_000))
    (folder / "empty.gguf").write_bytes(b"")
    models = list_models([folder], cache_path=tmp_path / "c.json", packaged=False,
                         hf_cache=False)
    by_name = {m.name: m for m in models}
    assert by_name["good"].readable and by_name["good"].architecture == "llama"
    assert "not a GGUF" in (by_name["notgguf"].error or "")
    assert "truncated" in (by_name["truncated"].error or "")
    assert "empty" in (by_name["empty"].error or "")


def test_an_unknown_architecture_is_listed_with_a_note(smollm: Path, tmp_path: Path) -> None:
    data = bytearray(smollm.read_bytes())
    end = read_header(smollm).data_offset
    data[:end] = data[:end].replace(b"llama", b"zlama")  # same length: offsets stay valid
    odd = tmp_path / "odd" / "odd.gguf"
    odd.parent.mkdir()
    odd.write_bytes(bytes(data))
    (m,) = list_models([odd.parent], cache_path=tmp_path / "c.json", packaged=False,
                       hf_cache=False)
    assert m.readable and m.architecture == "zlama"
    assert m.note is not None and "unknown architecture" in m.note


def test_the_hf_cache_is_found_from_the_environment(
    smollm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "hfhome"
    fake_hf_cache(home / "hub", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                  "smollm2-135m-instruct-q4_1.gguf", smollm)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    assert hf_cache_dir() == home / "hub"
    models = list_models(cache_path=tmp_path / "c.json", packaged=False)
    (m,) = models
    assert m.source == "hf-cache" and m.repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    assert m.name == "smollm2-135m-instruct-q4_1" and m.architecture == "llama"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nowhere"))
    assert hf_cache_models() == []  # a missing cache lists nothing
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "models--x--y").write_text("not a folder")
    assert hf_cache_models(tmp_path / "broken") == []


def test_fifty_models_list_fast_with_the_header_cache(
    smollm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fifty"
    folder.mkdir()
    for i in range(50):
        os.link(smollm, folder / f"model-{i:02d}.gguf")
    cache = tmp_path / "cache" / "gguf-headers.json"
    t0 = time.perf_counter()
    cold = list_models([folder], cache_path=cache, packaged=False, hf_cache=False)
    t1 = time.perf_counter()
    assert cache.is_file()

    def no_reads(path: object) -> None:
        raise AssertionError("a cached header was read again")

    monkeypatch.setattr(listing, "read_header", no_reads)
    warm = list_models([folder], cache_path=cache, packaged=False, hf_cache=False)
    t2 = time.perf_counter()
    print(f"\n50 models: cold {t1 - t0:.3f} s, warm {t2 - t1:.3f} s")
    assert len(cold) == len(warm) == 50
    assert warm == cold
    assert t2 - t1 < 1.0


def test_a_changed_file_is_read_again(smollm: Path, gemma: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    target = folder / "model.gguf"
    os.link(smollm, target)
    cache = tmp_path / "c.json"
    (m,) = list_models([folder], cache_path=cache, packaged=False, hf_cache=False)
    assert m.architecture == "llama"
    target.unlink()
    shutil.copyfile(gemma, target)
    (m,) = list_models([folder], cache_path=cache, packaged=False, hf_cache=False)
    assert m.architecture == "gemma3"


def test_a_corrupt_cache_file_is_ignored(smollm: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    folder = tmp_path / "m"
    folder.mkdir()
    os.link(smollm, folder / "a.gguf")
    (m,) = list_models([folder], cache_path=cache, packaged=False, hf_cache=False)
    assert m.readable


def test_find_model_by_name_prefix_and_path(smollm: Path, tmp_path: Path) -> None:
    models = list_models(cache_path=tmp_path / "c.json", hf_cache=False)
    smol = find_model(models, "smollm2-135m")
    assert smol is not None and smol.path == str(smollm)
    assert find_model(models, "gemma") is not None
    assert find_model(models, str(smollm)) == smol
    assert find_model(models, "nothing") is None


def test_the_default_cache_lives_in_the_lmdesk_cache_dir(smollm: Path) -> None:
    list_models(hf_cache=False)
    assert (Path(os.environ["LMDESK_CACHE_DIR"]) / "gguf-headers.json").is_file()


def test_a_cold_listing_of_many_models_reads_headers_in_parallel_and_agrees(
    tmp_path: Path, smollm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough uncached headers go to a process pool; the result is the same as one by one."""
    from tui.models.registry import folder_models

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(listing.PARALLEL_FROM + 2):
        os.link(smollm, folder / f"copy{i}.gguf")
    refs = folder_models([folder])
    cache = listing.HeaderCache(None)
    listing._read_missing_in_parallel(refs, cache)
    for ref in refs:  # filled by the pool, before any one-by-one read
        st = ref.path.stat()
        assert cache.is_fresh(str(ref.path), st.st_size, st.st_mtime_ns)
    parallel = list_models([folder], cache_dir=tmp_path / "c1", packaged=False, hf_cache=False)
    monkeypatch.setattr(listing, "PARALLEL_FROM", 10**6)  # now one by one
    serial = list_models([folder], cache_dir=tmp_path / "c2", packaged=False, hf_cache=False)
    assert [m.to_json() for m in parallel] == [m.to_json() for m in serial]
    assert all(m.n_params == 134_515_008 and m.has_chat_template for m in parallel)
