"""The fit estimate: its parts from real headers, its verdicts, its error against real loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.engine.gguf import GGUFError, read_header
from tui.models.catalogue import find_entry, load_catalogue
from tui.models.fit import (
    MiB,
    ModelShape,
    Resources,
    estimate_fit,
    measure_rss,
)

GiB = 1 << 30
PLENTY = Resources(ram_available=20 * GiB, ram_total=24 * GiB)


def test_kv_cache_size_follows_llama_cpp(smollm: Path, gemma: Path) -> None:
    s = ModelShape.from_header(read_header(smollm))
    # 30 layers x 3 kv heads x (64 + 64) x f16 = 23,040 bytes per token
    assert s.kv_bytes(2048) == 2048 * 23_040 == 45 * MiB
    assert s.kv_bytes(8192) == 180 * MiB
    assert s.kv_bytes(2000) == s.kv_bytes(2048)  # cells are padded to 256
    g = ModelShape.from_header(read_header(gemma))
    assert (g.n_layers, g.n_kv_heads, g.key_length, g.swa_layers) == (18, 1, 256, 15)
    # llama-cpp-python turns swa_full on: every layer caches the whole context
    assert g.kv_bytes(8192) == 18 * 8192 * 1024 == 144 * MiB
    # without it the 15 sliding-window layers keep window (512) + n_ubatch (512) cells
    assert g.kv_bytes(8192, swa_full=False) == (3 * 8192 + 15 * 1024) * 1024
    assert g.kv_bytes(8192, type_bytes=1.0625) < g.kv_bytes(8192)  # q8_0 cache


def test_repacked_weights_are_counted_once_more(gemma: Path, smollm: Path) -> None:
    g = ModelShape.from_header(read_header(gemma))
    assert 12 * MiB < g.repack_bytes < 14 * MiB  # its Q4_K matrices (llama.cpp: 12.66 MiB)
    assert ModelShape.from_header(read_header(smollm)).repack_bytes == 0  # Q4_1: no repack


@pytest.mark.parametrize("n_ctx", [2048, 8192])
@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_estimate_is_within_15_percent_of_the_measured_worker_rss(
    which: str, n_ctx: int, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(which)
    fit = estimate_fit(path, n_ctx=n_ctx, resources=PLENTY)
    measured = measure_rss(path, n_ctx)
    assert measured.n_ctx == n_ctx
    err = fit.ram_bytes / measured.rss_after_reply - 1
    print(f"\n{path.name} n_ctx {n_ctx}: estimate {fit.ram_bytes / MiB:.1f} MiB, measured "
          f"{measured.rss_loaded / MiB:.1f} MiB loaded / {measured.rss_after_reply / MiB:.1f} "
          f"MiB after a reply ({err:+.1%})")
    assert abs(err) < 0.15
    assert fit.verdict == "green"


def test_verdicts_and_suggestions_against_the_ram_at_hand(smollm: Path) -> None:
    need = estimate_fit(smollm, n_ctx=8192, resources=PLENTY)
    assert need.ram_bytes == (need.weights_bytes + need.kv_bytes + need.compute_bytes
                              + need.overhead_bytes)
    assert need.suggested_n_ctx == 8192 and need.suggested_n_gpu_layers == 0
    small = Resources(ram_available=need.ram_bytes - 50 * MiB, ram_total=4 * GiB)
    red = estimate_fit(smollm, n_ctx=8192, resources=small)
    assert red.verdict == "red" and "available" in red.reason
    assert 0 < red.suggested_n_ctx < 8192
    assert estimate_fit(smollm, n_ctx=red.suggested_n_ctx, resources=small).verdict != "red"
    tight = Resources(ram_available=need.ram_bytes + 100 * MiB, ram_total=4 * GiB)
    assert estimate_fit(smollm, n_ctx=8192, resources=tight).verdict == "amber"
    none = Resources(ram_available=10 * MiB, ram_total=GiB)
    nothing = estimate_fit(smollm, resources=none)
    assert nothing.verdict == "red" and nothing.suggested_n_ctx == 0


def test_default_context_is_the_engines(gemma: Path) -> None:
    assert estimate_fit(gemma, resources=PLENTY).n_ctx == 8192  # trained 32768, capped
    beyond = estimate_fit(gemma, n_ctx=65536, resources=PLENTY)
    assert any("beyond the trained context" in n for n in beyond.notes)


def test_gpu_offload_moves_weights_to_vram_and_suggests_layers() -> None:
    entry = find_entry("llama-3.1-8b-instruct")
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    gpu = Resources(ram_available=20 * GiB, ram_total=24 * GiB, vram_free=24 * GiB,
                    vram_total=24 * GiB, gpu_name="RTX 4090")
    fit = estimate_fit(shape, n_ctx=8192, resources=gpu)
    assert fit.verdict == "green" and fit.n_gpu_layers == -1
    assert fit.vram_bytes > shape.weights_bytes * 0.9 and fit.ram_bytes < 2 * GiB
    small_gpu = Resources(ram_available=20 * GiB, ram_total=24 * GiB, vram_free=3 * GiB,
                          vram_total=4 * GiB)
    part = estimate_fit(shape, n_ctx=8192, resources=small_gpu)
    assert part.verdict == "red"  # all layers asked for, not all fit
    assert 0 < part.suggested_n_gpu_layers < shape.n_layers
    ok = estimate_fit(shape, n_ctx=8192, n_gpu_layers=part.suggested_n_gpu_layers,
                      resources=small_gpu)
    assert ok.verdict != "red" and ok.vram_bytes <= small_gpu.vram_free


def test_catalogue_entries_all_have_a_fit_here() -> None:
    entries = load_catalogue()
    ids = {e.id for e in entries}
    for wanted in ("tinyllama-1.1b-chat", "phi-2", "phi-3-mini-4k-instruct",
                   "mistral-7b-instruct-v0.2", "mixtral-8x7b-instruct", "llama-2-7b-chat",
                   "llama-2-13b-chat", "llama-3-8b-instruct", "llama-3.1-8b-instruct",
                   "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-7b-instruct",
                   "gemma-2-2b-it", "gemma-2-9b-it", "falcon-7b-instruct",
                   "smollm2-135m-instruct", "gpt-j-6b", "gpt-neox-20b"):
        assert wanted in ids
    for e in entries:
        assert "/" in e.repo_id and all(f.file.endswith(".gguf") for f in e.files)
        if not e.has_files:  # a name readers look for, with no GGUF that could be checked
            assert e.verified is None and "GGUF" in e.notes
            with pytest.raises(KeyError, match="no GGUF"):
                e.file()
            continue
        fit = e.fit(resources=PLENTY)
        assert fit.ram_bytes > e.file().size
    llama2 = find_entry("llama-2-7b-chat")
    assert llama2 is not None
    assert llama2.shape().kv_bytes(4096) == 2 * GiB  # 32 x 32 x 256 x 2 bytes x 4096
    mixtral = find_entry("mixtral-8x7b-instruct")
    assert mixtral is not None and mixtral.fit(resources=PLENTY).verdict == "red"
    with pytest.raises(KeyError):
        llama2.file("Q3_K_XS")


def test_an_unreadable_file_raises_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML....")
    with pytest.raises(GGUFError, match="not a GGUF"):
        estimate_fit(bad, resources=PLENTY)
