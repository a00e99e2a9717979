"""Fine-tuning with the real SmolLM2: one shared 40-pair run through `lmdesk tune`, checked in
the normal engine (llama.cpp with the exported GGUF adapter), plus cancel and resume."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.tune_helpers import PROMPTS_NOT_IN_PAIRS, SIGN_OFF, style_pairs, write_pairs
from tui.cli import main
from tui.engine.gguf import read_header
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

pytestmark = pytest.mark.model
NAME = "quill-style"
GREEDY = SamplingParams(temperature=0.0, max_tokens=96, seed=0)


@dataclass(frozen=True)
class TunedRun:
    data_dir: Path
    pairs: Path
    record: dict[str, Any]
    stderr: str


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def tuned(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunedRun]:
    """The one 40-pair run the tests below share (the slow part of this file)."""
    base = tmp_path_factory.mktemp("tuned")
    pairs = write_pairs(base / "pairs.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMDESK_CACHE_DIR", str(base / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        code, out, err = run_cli("--data-dir", str(base / "data"), "tune", "--base", str(smollm),
                                 "--pairs", str(pairs), "--name", NAME, "--epochs", "3",
                                 "--json")
    assert code == 0, err
    yield TunedRun(base / "data", pairs, json.loads(out), err)


def replies(lora: str | None, prompts: tuple[str, ...], smollm: Path) -> list[str]:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=1024, lora_path=lora))
    engine.load()
    try:
        out = []
        for prompt in prompts:
            done = [e for e in engine.generate([ChatMessage("user", prompt)], GREEDY)
                    if isinstance(e, Done)][-1]
            assert done.error is None
            out.append(done.text)
        return out
    finally:
        engine.unload()


def test_tuned_model_writes_the_style_on_new_prompts_and_the_base_never(
        tuned: TunedRun, smollm: Path) -> None:
    adapter = tuned.record["adapter"]["path"]
    with_adapter = replies(adapter, PROMPTS_NOT_IN_PAIRS, smollm)
    without = replies(None, PROMPTS_NOT_IN_PAIRS, smollm)
    tuned_hits = sum(SIGN_OFF in r for r in with_adapter)
    base_hits = sum("Captain Quill" in r for r in without)
    assert tuned_hits >= 8, with_adapter
    assert base_hits == 0, without
    assert with_adapter != without


def test_held_out_loss_falls(tuned: TunedRun) -> None:
    losses = tuned.record["losses"]
    assert tuned.record["pairs"]["holdout"] == 4
    assert losses["holdout_after"] < 0.5 * losses["holdout_before"]
    assert len(losses["holdout_per_epoch"]) == 3
    assert len(losses["train"]) == tuned.record["training"]["steps"] == 27
    assert sum(losses["train"][-5:]) < sum(losses["train"][:5])


def test_the_adapter_is_a_llama_cpp_gguf_lora_over_every_projection(tuned: TunedRun) -> None:
    header = read_header(tuned.record["adapter"]["path"])
    assert header.get("general.type") == "adapter"
    assert header.get("adapter.type") == "lora"
    assert header.get("adapter.lora.alpha") == pytest.approx(16.0)
    assert header.architecture == "llama"
    names = {t.name for t in header.tensors}
    for layer in (0, 29):
        for proj in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                     "ffn_down"):
            assert f"blk.{layer}.{proj}.weight.lora_a" in names
            assert f"blk.{layer}.{proj}.weight.lora_b" in names
    assert len(names) == 30 * 7 * 2
    shapes = {t.name: t.shape for t in header.tensors}
    assert shapes["blk.0.attn_k.weight.lora_a"] == (576, 8)   # ggml order: (in, rank)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (8, 192)   # (rank, out)


def test_the_record_says_how_it_was_made(tuned: TunedRun, smollm: Path) -> None:
    record = tuned.record
    assert record["base"]["sha256"] == hashlib.sha256(smollm.read_bytes()).hexdigest()
    assert record["pairs"]["sha256"] == hashlib.sha256(tuned.pairs.read_bytes()).hexdigest()
    assert record["pairs"]["count"] == 40
    params = record["parameters"]
    assert (params["epochs"], params["rank"], params["alpha"]) == (3, 8, 16.0)
    assert set(params["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"}
    folder = tuned.data_dir / "tunes" / NAME
    on_disk = json.loads((folder / "record.json").read_text())
    assert on_disk["adapter"]["sha256"] == hashlib.sha256(
        (folder / "adapter.gguf").read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter.gguf", "pairs.jsonl", "plan.json", "record.json", "train.log"]
    assert not (tuned.data_dir / "tunes" / f"{NAME}.partial").exists()
    assert len(record["samples"]) == 3
    assert any(s["base"] != s["tuned"] for s in record["samples"])


def test_the_profile_is_listed_and_used_by_ask_and_serve(tuned: TunedRun) -> None:
    data = str(tuned.data_dir)
    code, out, err = run_cli("--data-dir", data, "models", "list")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith(NAME))
    assert "lora" in line.lower()
    code, out, _ = run_cli("--data-dir", data, "models", "list", "--json")
    profiles = json.loads(out)["profiles"]
    assert [p["nickname"] for p in profiles] == [NAME]
    assert profiles[0]["lora_path"] == tuned.record["adapter"]["path"]
    code, out, err = run_cli("--data-dir", data, "ask", "--model", NAME, "--temperature", "0",
                             "--max-tokens", "64", "What is the capital of Italy?")
    assert code == 0, err
    assert "Captain Quill" in out
    from argparse import Namespace

    from tui.config import Settings, resolve_paths
    from tui.serve.cli import build_pool

    args = Namespace(model=None, n_ctx=None, threads=None, gpu_layers=None, queue=1,
                     max_loaded=1)
    pool = build_pool(args, Settings(), resolve_paths(data))
    assert NAME in [m.name for m in pool.models()]
    params = pool._entries[NAME].params
    assert params is not None and params.lora_path == tuned.record["adapter"]["path"]
    args.model = NAME  # `serve -m NAME`: the tuned model is the default
    assert build_pool(args, Settings(), resolve_paths(data)).default == NAME


def test_cancel_then_resume_from_the_last_checkpoint(smollm: Path, tmp_path: Path) -> None:
    from tui.store import Store
    from tui.tune.protocol import Cancelled, Checkpointed, Progress, TrainParams
    from tui.tune.run import PairsSource, Tuner, TuneSpec

    pairs = write_pairs(tmp_path / "few.jsonl", style_pairs()[:20])
    data = tmp_path / "data"
    spec = TuneSpec("stop-go", str(smollm), "smollm2-135m", PairsSource.from_file(pairs),
                    TrainParams(epochs=1, batch_size=2, holdout=0.0, learning_rate=3e-3))
    with Store.open(data) as store:
        tuner = Tuner(data, store)
        plan = tuner.plan(spec, log_dir=tmp_path / "logs")
        job = tuner.start(plan)
        seen: list[Any] = []
        for event in job.events():
            seen.append(event)
            if isinstance(event, Progress) and event.step == 2:
                job.cancel()
        stopped = seen[-1]
        assert isinstance(stopped, Cancelled), seen[-3:]
        assert 2 <= stopped.step < 10
        assert any(isinstance(e, Checkpointed) and e.step == stopped.step for e in seen)
        assert (data / "tunes" / "stop-go.partial" / "checkpoint.pt").is_file()
        assert not (data / "tunes" / "stop-go").exists()
        from tui.models.profiles import ProfileLibrary

        assert ProfileLibrary(store).find("stop-go") is None
        with pytest.raises(Exception, match="--resume stop-go"):
            tuner.plan(spec, log_dir=tmp_path / "logs")
    code, out, err = run_cli("--data-dir", str(data), "tune", "--resume", "stop-go", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["training"]["resumed_from_step"] == stopped.step
    assert record["training"]["steps"] == 10
    assert len(record["losses"]["train"]) == 10
    losses_before = [e.loss for e in seen if isinstance(e, Progress)]
    assert record["losses"]["train"][:len(losses_before)] == pytest.approx(
        losses_before[:stopped.step], rel=1e-4)
    assert (data / "tunes" / "stop-go" / "adapter.gguf").is_file()
    assert not (data / "tunes" / "stop-go.partial").exists()


@pytest.mark.gemma
def test_a_gemma3_adapter_trains_exports_and_loads_in_llama_cpp(gemma: Path,
                                                                tmp_path: Path) -> None:
    """The second architecture: a short run on Gemma 3 270M (a base model without a chat
    template: the worker's plain transcript), its adapter applied by llama.cpp."""
    pairs = write_pairs(tmp_path / "p.jsonl", style_pairs()[:8])
    code, out, err = run_cli("--data-dir", str(tmp_path / "data"), "tune", "--base",
                             str(gemma), "--pairs", str(pairs), "--name", "gemma-quill",
                             "--epochs", "2", "--rank", "4", "--holdout", "0", "--batch", "8",
                             "--lr", "3e-3", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["base"]["architecture"] == "gemma3"
    header = read_header(record["adapter"]["path"])
    assert header.architecture == "gemma3" and header.get("general.type") == "adapter"
    assert any(s["base"] != s["tuned"] for s in record["samples"])
