"""Model profiles (tui/models/profiles.py): CRUD, validation, usage, load params, LoRA checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.engine.errors import EngineError
from tui.engine.local import LocalEngine
from tui.engine.protocol import GenerationStats, SamplingParams
from tui.models.profiles import (
    ProfileError,
    ProfileLibrary,
    ProfileNotFound,
    apply_sampling,
    check_files,
    engine_key,
    load_params,
)
from tui.models.registry import packaged_models
from tui.session.usage import record_usage, usage_of
from tui.store import Store


def stats(tps: float, ttft: float) -> GenerationStats:
    return GenerationStats(10, 100.0, 8, tps, ttft, 0, 10, "stop", 1.0)


def smol() -> str:
    return next(str(r.path) for r in packaged_models() if r.name == "smollm2-135m")


def test_crud_validation_and_usage(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    try:
        lib = ProfileLibrary(store)
        p = lib.create("terse-coder", "/m/smol.gguf", model_name="smollm2-135m", n_ctx=512,
                       sampling={"temperature": "0", "max_tokens": 64}, notes="code")
        assert p.sampling == {"temperature": 0.0, "max_tokens": 64}
        assert p.label == "smollm2-135m (terse-coder)"
        assert lib.get(p.id) == lib.get("Terse-Coder") == p
        with pytest.raises(ProfileError, match="already"):
            lib.create("terse-coder", "/m/x.gguf")
        with pytest.raises(ProfileError, match="nickname"):
            lib.create("  ", "/m/x.gguf")
        with pytest.raises(ProfileError, match="temperature"):
            lib.create("hot", "/m/x.gguf", sampling={"temperature": 9})
        with pytest.raises(ProfileError, match="unknown sampling"):
            lib.create("odd", "/m/x.gguf", sampling={"warmth": 1})
        with pytest.raises(ProfileError, match="n_ctx"):
            lib.create("tiny", "/m/x.gguf", n_ctx=2)
        q = lib.update(p.id, n_ctx=1024, notes="more")
        assert q.n_ctx == 1024 and lib.get(p.id).notes == "more"
        with pytest.raises(ProfileError):
            lib.update(p.id, id="other")
        # usage per profile beside the per-model usage rows, which stay readable
        record_usage(store, "smollm2-135m", stats(50.0, 0.2))
        lib.record_usage(p.id, stats(40.0, 0.1))
        u = lib.record_usage(p.id, stats(60.0, 0.3))
        assert u.replies == 2 and u.mean_tps == pytest.approx(50.0)
        assert u.mean_ttft == pytest.approx(0.2)
        assert lib.get(p.id).usage == u
        assert set(usage_of(store)) == {"smollm2-135m"}
        assert [x.id for x in lib.list()] == [p.id]
        sampled = apply_sampling(lib.get(p.id), SamplingParams())
        assert sampled.temperature == 0.0 and sampled.max_tokens == 64
        assert sampled.top_p == SamplingParams().top_p
        lib.delete("terse-coder")
        with pytest.raises(ProfileNotFound):
            lib.get(p.id)
        assert set(usage_of(store)) == {"smollm2-135m"}
    finally:
        store.close()


def test_load_params_carry_lora_and_key(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    try:
        lib = ProfileLibrary(store)
        a = lib.create("a", "/m/x.gguf", n_ctx=512, n_gpu_layers=0, n_threads=2,
                       lora_path="/m/adapter.gguf")
        params = load_params(a)
        assert (params.model_path, params.n_ctx, params.n_gpu_layers, params.n_threads,
                params.lora_path) == ("/m/x.gguf", 512, 0, 2, "/m/adapter.gguf")
        b = lib.create("b", "/m/x.gguf", n_ctx=1024)
        assert a.engine_key() != b.engine_key() != "/m/x.gguf"
        assert engine_key(load_params(lib.create("c", "/m/x.gguf"))) == "/m/x.gguf"
        with pytest.raises(ProfileError, match="model file"):
            check_files(a)
        model = tmp_path / "x.gguf"
        model.write_bytes(b"GGUF")
        with pytest.raises(ProfileError, match=r"LoRA adapter .* does not exist"):
            check_files(lib.update("a", model_path=str(model)))
    finally:
        store.close()


def test_missing_lora_is_a_clear_error_from_the_real_engine(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    try:
        p = ProfileLibrary(store).create("lora", smol(), n_ctx=256,
                                         lora_path=str(tmp_path / "nope.gguf"))
    finally:
        store.close()
    engine = LocalEngine(load_params(p), log_path=tmp_path / "worker.log")
    try:
        with pytest.raises(EngineError, match=r"LoRA adapter .*nope\.gguf does not exist"):
            engine.load()
    finally:
        engine.unload()
