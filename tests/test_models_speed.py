"""Predicted speed: the physical model, its calibration from this machine's runs, the
calibration file, and the prediction against a real measurement of both packaged models."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from tui.engine.protocol import GenerationStats, ModelInfo
from tui.models import calibration as calibration_mod
from tui.models import speed as speed_mod
from tui.models.calibration import (
    CALIBRATION_FILE,
    Calibration,
    calibrate_from_reply,
    record_measured,
    run_from_stats,
    speed_model,
)
from tui.models.catalogue import find_entry
from tui.models.fit import shape_of
from tui.models.measure import measure_speeds
from tui.models.probe import measure_machine
from tui.models.speed import (
    MachineSpeed,
    Run,
    SpeedModel,
    TokenCost,
    fit_runs,
    model_key,
)

MACHINE = MachineSpeed(bandwidth_gb_s=31.0, gflops=200.0, threads=2, cpu="test cpu x2",
                       measured_at=1.0)


def _run(key: str, cost: TokenCost, tok_s: float, *, at: float = 1.0, prompt_tok_s: float = 0.0,
         evaluated: int = 0) -> Run:
    return Run(key=key, read_bytes=cost.read_bytes, kv_bytes_per_token=cost.kv_bytes_per_token,
               n_layers=cost.n_layers, vocab_size=cost.vocab_size,
               active_params=cost.active_params, n_threads=2, n_gpu_layers=0,
               gen_tok_s=tok_s, prompt_tok_s=prompt_tok_s, prompt_tokens=evaluated,
               evaluated_prompt_tokens=evaluated, generated_tokens=128, source="reply", at=at)


def _stats(tok_s: float, generated: int = 100, prompt_tps: float = 300.0) -> GenerationStats:
    return GenerationStats(prompt_tokens=200, prompt_tokens_per_s=prompt_tps,
                           generated_tokens=generated, generation_tokens_per_s=tok_s,
                           time_to_first_token_s=0.2, reused_tokens=0,
                           evaluated_prompt_tokens=200, stop_reason="stop", total_seconds=2.0)


def _info(path: Path) -> ModelInfo:
    return ModelInfo(path=str(path), name=path.stem, architecture="llama", n_ctx=2048,
                     n_ctx_train=8192, n_layers=30, n_params=1, size_bytes=1, chat_template=None,
                     n_threads=2, n_threads_batch=2, n_gpu_layers=0, flash_attn=False,
                     gpu_backend=False, load_seconds=0.1, worker_pid=1)


def test_the_physical_model_scales_with_the_weights_read() -> None:
    many_cores = SpeedModel(replace(MACHINE, gflops=5000.0))  # bound by memory
    q4 = find_entry("qwen3-8b")
    assert q4 is not None
    fast = many_cores.predict(q4.shape("Q3_K_M"))
    slow = many_cores.predict(q4.shape("Q8_0"))
    assert fast.tok_s > 1.5 * slow.tok_s > 0
    assert fast.prompt_tok_s > 0 and "physical model" in fast.basis
    # twice the bandwidth: a memory-bound model gets faster
    wide = SpeedModel(replace(MACHINE, bandwidth_gb_s=62.0, gflops=5000.0))
    assert wide.predict(q4.shape("Q8_0")).tok_s > 1.5 * slow.tok_s
    # two cores are bound by arithmetic first: more bandwidth alone does not help them
    few = SpeedModel(replace(MACHINE, gflops=50.0))
    more_bw = SpeedModel(replace(MACHINE, gflops=50.0, bandwidth_gb_s=62.0))
    assert more_bw.predict(q4.shape("Q4_K_M")).tok_s == pytest.approx(
        few.predict(q4.shape("Q4_K_M")).tok_s)
    model = SpeedModel(MACHINE)
    # a mixture of experts reads only the routed experts
    moe = find_entry("qwen3-coder-30b-a3b")
    assert moe is not None
    moe_shape = moe.shape("Q4_K_M")
    assert moe_shape.read_bytes < 0.25 * moe_shape.weights_bytes
    assert model.predict(moe_shape).tok_s > model.predict(find_entry("qwen3-14b")
                                                          .shape("Q4_K_M")).tok_s  # type: ignore[union-attr]


def test_layers_on_a_gpu_are_faster_than_on_the_cpu() -> None:
    gpu = SpeedModel(replace(MACHINE, gpu_bandwidth_gb_s=900.0, gpu_name="test gpu"))
    entry = find_entry("llama-3.1-8b-instruct")
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    cpu = gpu.predict(shape, n_gpu_layers=0)
    half = gpu.predict(shape, n_gpu_layers=shape.n_layers // 2)
    full = gpu.predict(shape, n_gpu_layers=-1)
    assert cpu.tok_s < half.tok_s < full.tok_s
    assert full.n_gpu_layers == shape.n_layers and full.tok_s > 40
    # no GPU on the machine: the layers stay on the CPU
    assert SpeedModel(MACHINE).predict(shape, n_gpu_layers=-1).n_gpu_layers == 0


def test_read_bytes_from_real_headers(smollm: Path, gemma: Path) -> None:
    for path in (smollm, gemma):
        s = shape_of(path)
        # both tie their output to the token embedding: every byte is read per token
        assert s.read_bytes == s.weights_bytes and s.active_params == s.n_params


def test_the_fit_recovers_a_machine_slower_than_the_prior() -> None:
    """Runs made by a machine 1.6x slower on weights and 2x on overhead: the fitted model
    predicts a third model it never saw within a few percent."""
    shapes = [find_entry(i).shape() for i in  # type: ignore[union-attr]
              ("smollm2-135m-instruct", "qwen3-0.6b", "llama-3.2-3b-instruct")]
    costs = [TokenCost.of(s) for s in shapes]

    def truth(c: TokenCost) -> float:
        w = speed_mod._weights_time(c, MACHINE, 192, 0.0)
        o = speed_mod._overhead_time(c, 0.0)
        return 1 / (1.6 * w + 2.0 * o)

    runs = [_run(f"m{i}", c, truth(c)) for i, c in enumerate(costs[:2])]
    fitted = fit_runs(runs, MACHINE)
    assert fitted.models == 2 and 1.3 < fitted.k_mem < 1.9 and fitted.k_over > 1.3
    model = SpeedModel(MACHINE, runs)
    predicted = model.predict(shapes[2], context_tokens=192).tok_s
    assert predicted / truth(costs[2]) == pytest.approx(1.0, abs=0.1)
    assert "calibrated from 2 models" in model.predict(shapes[2]).basis


def test_own_runs_converge_on_the_measured_speed() -> None:
    """The calibration converges as replies accumulate: a model's own median weighs
    n / (n + 0.5) after n replies."""
    entry = find_entry("qwen3-4b")
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    cost = TokenCost.of(shape)
    prior = SpeedModel(MACHINE).predict(shape).tok_s
    actual = prior * 0.5  # this machine turns out twice as slow for it
    errors = []
    runs: list[Run] = []
    for n in range(1, 9):
        runs.append(_run("qwen3-4b.gguf:1", cost, actual * (1.02 if n % 2 else 0.98), at=n))
        p = SpeedModel(MACHINE, runs).predict(shape, key="qwen3-4b.gguf:1")
        errors.append(abs(p.tok_s / actual - 1))
        assert p.own_runs == n
    assert errors[0] < 0.25  # one reply already lands within the 25%
    assert errors[-1] < errors[0] and errors[-1] < 0.05
    # another file is not taken for this one
    assert SpeedModel(MACHINE, runs).predict(shape, key="other.gguf:1").own_runs == 0


def test_prompt_rates_calibrate_only_from_long_prompts() -> None:
    entry = find_entry("qwen3-4b")
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    cost = TokenCost.of(shape)
    prior = SpeedModel(MACHINE).predict(shape).prompt_tok_s
    short = [_run("a", cost, 5.0, prompt_tok_s=prior / 10, evaluated=20)]
    assert SpeedModel(MACHINE, short).predict(shape).prompt_tok_s == pytest.approx(prior)
    long = [_run("a", cost, 5.0, prompt_tok_s=prior / 3, evaluated=400)]
    calibrated = SpeedModel(MACHINE, long).predict(shape).prompt_tok_s
    assert calibrated < prior / 2


def test_record_reply_keeps_runs_in_the_data_folder(smollm: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert calibrate_from_reply(data, _info(smollm), _stats(90.0))
    assert not calibrate_from_reply(data, _info(smollm), _stats(90.0, generated=3))  # too short
    assert not calibrate_from_reply(data, _info(tmp_path / "gone.gguf"), _stats(90.0))
    assert not calibrate_from_reply(None, _info(smollm), _stats(90.0))
    path = data / CALIBRATION_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(data.stat().st_mode & 0o777) == "0o700"  # a data folder it made is private
    saved = Calibration.load(data)
    assert [r.gen_tok_s for r in saved.runs] == [90.0]
    assert saved.runs[0].key == model_key(smollm) and saved.runs[0].source == "reply"
    for i in range(speed_mod.RUNS_PER_MODEL + 5):
        calibrate_from_reply(data, _info(smollm), _stats(80.0 + i))
    kept = Calibration.load(data).runs
    assert len(kept) == speed_mod.RUNS_PER_MODEL  # the oldest of one model are dropped
    assert min(r.gen_tok_s for r in kept) == 85.0


def test_a_damaged_calibration_file_is_started_afresh(tmp_path: Path, smollm: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / CALIBRATION_FILE).write_text("{not json")
    cal = Calibration.load(data)
    assert cal.runs == [] and cal.problem and "unreadable" in cal.problem
    assert calibrate_from_reply(data, _info(smollm), _stats(70.0))
    assert len(Calibration.load(data).runs) == 1
    payload = json.loads((data / CALIBRATION_FILE).read_text())
    payload["runs"].append({"key": "x", "gen_tok_s": "fast"})  # one bad run among good ones
    (data / CALIBRATION_FILE).write_text(json.dumps(payload))
    assert len(Calibration.load(data).runs) == 1


def test_the_machine_is_measured_once_and_its_best_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = iter([replace(MACHINE, bandwidth_gb_s=30.0, measured_at=1e12),
                   replace(MACHINE, bandwidth_gb_s=9.0, measured_at=2e12)])
    calls: list[int] = []

    def fake_probe(threads: int | None = None) -> MachineSpeed:
        calls.append(1)
        return next(probes)

    monkeypatch.setattr(calibration_mod, "measure_machine", fake_probe)
    monkeypatch.setattr(calibration_mod, "cpu_label", lambda: MACHINE.cpu)
    monkeypatch.setattr(calibration_mod, "physical_cores", lambda: 2)
    monkeypatch.setattr(calibration_mod.time, "time", lambda: 1e12 + 5)
    data = tmp_path / "data"
    assert speed_model(data).machine.bandwidth_gb_s == 30.0
    assert speed_model(data).machine.bandwidth_gb_s == 30.0 and len(calls) == 1
    # asked again on a busy machine: the lower reading does not replace the better one
    assert speed_model(data, refresh=True).machine.bandwidth_gb_s == 30.0 and len(calls) == 2


def test_run_from_stats_ignores_failed_replies(smollm: Path) -> None:
    shape = shape_of(smollm)
    failed = replace(_stats(50.0), stop_reason="error")
    assert run_from_stats(shape, "k", failed, n_threads=2, n_gpu_layers=0, source="r") is None
    ok = run_from_stats(shape, "k", _stats(50.0), n_threads=2, n_gpu_layers=0, source="r")
    assert ok is not None and ok.evaluated_prompt_tokens == 200


# -- against the real engine ----------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.gemma
@pytest.mark.timeout(900)
def test_prediction_is_within_25_percent_of_the_measured_speed(
    smollm: Path, gemma: Path, tmp_path: Path
) -> None:
    """The issue's target, on both packaged models: this machine's calibration (its probe and
    the runs measured here, as replies and `--measure` keep them) predicts a new measurement
    within 25%. Both models load side by side and their replies alternate; of eight rounds,
    1, 4, 5 and 8 calibrate and 2, 3, 6 and 7 are the measurement (their median): the load of
    a busy machine weighs on both alike, a load that rises or falls through the test favours
    neither, and one stalled reply does not decide. How well the physical
    model alone predicts a model it never ran is `lmdesk bench speed`'s figure (a ratio
    printed, not asserted: it is a speed target)."""
    measured = measure_speeds([smollm, gemma], n_ctx=2048, tokens=32, runs=8)
    calibrating, measuring = (0, 3, 4, 7), (1, 2, 5, 6)
    data = tmp_path / "data"
    Calibration(data / CALIBRATION_FILE, measure_machine()).save()
    for path, m in zip((smollm, gemma), measured, strict=True):
        for i in calibrating:  # four replies' worth of calibration per model
            assert record_measured(data, path, replace(m, gen_tok_s=m.runs[i]))
    model = speed_model(data)
    assert model.fitted().models == 2
    for path, m in zip((smollm, gemma), measured, strict=True):
        later = statistics.median(m.runs[i] for i in measuring)
        prediction = model.predict(shape_of(path), key=model_key(path),
                                   context_tokens=m.prompt_tokens + 16)
        ratio = prediction.tok_s / later
        print(f"\n{path.name}: predicted {prediction.tok_s:.1f} ({prediction.basis}), "
              f"measured {later:.1f} tok/s (runs {', '.join(f'{r:.1f}' for r in m.runs)}): "
              f"ratio {ratio:.2f}")
        assert prediction.own_runs == 4
        assert 0.75 <= ratio <= 1.25


@pytest.mark.model
def test_models_info_measure_prints_predicted_beside_measured(
    smollm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_models_cli import run

    code, out, err = run(capsys, "info", str(smollm), "--n-ctx", "2048", "--measure", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["predicted_tok_s"] > 0 and data["measured_tok_s"] > 0
    assert data["measured_speed"]["runs"] and data["measured"]["rss_after_reply"] > 0
    kept = Calibration.load(Path(os.environ["LMDESK_DATA_DIR"])).runs
    assert [r.source for r in kept] == ["measure"] and kept[0].key == model_key(smollm)


def test_a_run_that_only_could_offload_counts_as_a_cpu_run() -> None:
    """A CPU-only machine whose llama.cpp build reports every layer "on the GPU" (an RPC
    backend counts as one): its runs calibrate the CPU predictions."""
    entry = find_entry("qwen3-4b")
    assert entry is not None
    shape = entry.shape("Q4_K_M")
    run = replace(_run("k", TokenCost.of(shape), 2.0), n_gpu_layers=shape.n_layers,
                  gpu_layer_share=1.0)
    model = SpeedModel(MACHINE, [run])
    assert model.fitted().models == 1
    assert model.predict(shape, key="k").own_runs == 1
