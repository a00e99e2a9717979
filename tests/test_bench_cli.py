"""`lmdesk bench` (the engine) runs end to end and prints its figures; no timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tui.models.calibration import Calibration
from tui.models.registry import smollm2_path
from tui.models.speed import model_key


@pytest.mark.timeout(700)
def test_engine_bench_prints_rates_ratios_and_ceiling() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "--reps", "1", "--tokens", "16",
         "--embed-texts", "40", "--n-ctx", "2048"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"gen t/s\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d", out), out
    assert re.search(r"engine/native generation tokens/s = \d+\.\d{3}", out), out
    assert re.search(r"engine/old generation tokens/s = \d+\.\d{3}", out), out
    if re.search(r"gpu_layers=0 flash_attention=on", out):  # the old default was off there
        assert re.search(r"engine/before generation tokens/s = \d+\.\d{3} \(the old loop with "
                         r"the old defaults: flash attention off, here on\)", out), out
    else:
        assert "engine/before" not in out, out
    assert re.search(r"embed\s+\d+ texts/s", out), out
    assert re.search(r"ceiling\s+\d+\.\d GB/s", out), out
    assert re.search(r"worker RSS \d+ MiB", out), out
    assert re.search(r"cancel\s+\d+\.\d.* ms during a long prompt", out), out
    # the bench's engine rate is kept as a measured run: it calibrates speed predictions
    runs = Calibration.load(Path(os.environ["LMDESK_DATA_DIR"])).runs
    default = smollm2_path()
    assert default is not None
    assert [(r.source, r.key) for r in runs] == [("bench", model_key(default))]
    assert runs[0].gen_tok_s > 0


def test_app_bench_drives_the_real_app_in_a_terminal() -> None:
    """`lmdesk bench app`: the real lmdesk in a pty against `lmdesk ask`; prints the ratio and
    the app process's CPU per token (no figure is asserted, only that they are measured)."""
    from tui.app.bench_app import run_app_bench

    lines: list[str] = []
    results = run_app_bench(lines.append, reps=1, max_tokens=24, sizes=((80, 24),),
                            kinds=("list",))
    text = "\n".join(lines)
    assert re.search(r"ratio app/ask generation tokens/s = \d+\.\d{3}", text), text
    assert re.search(r"app process CPU per streamed token = \d+\.\d{2} ms", text), text
    assert results["ratio_list_80x24"] > 0 and results["cpu_ms_per_token_list_80x24"] > 0


def test_speed_bench_prints_predicted_over_measured_for_both_models(tmp_path: Path) -> None:
    """`lmdesk bench speed`: the physical, cross-model and calibrated predictions against a
    measurement of each packaged model (ratios printed, not asserted)."""
    from tui.models.bench import run_speed_bench

    lines: list[str] = []
    results = run_speed_bench(tmp_path / "data", runs=2, tokens=16, out=lines.append)
    text = "\n".join(lines)
    assert re.search(r"SmolLM2.*\d+\.\d\s+\d+\.\d+ \d+\.\d+ \d+\.\d+$", text, re.M), text
    assert "target 0.75-1.25" in text
    assert results["smollm_measured"] > 0 and results["gemma_ratio_other"] > 0
    kept = Calibration.load(tmp_path / "data").runs
    assert sorted(r.source for r in kept) == ["bench", "bench"]


def test_rpc_bench_prints_local_one_and_two_workers_with_ratios(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`lmdesk bench rpc`: real loopback rpc-workers; the figures and ratios are printed (no
    timing asserted) and the workers are stopped afterwards."""
    from tui.engine.protocol import LoadParams
    from tui.rpc.bench import run_rpc_bench

    smol = smollm2_path()
    assert smol is not None
    runs = run_rpc_bench(LoadParams(model_path=str(smol), n_ctx=512), reps=1, max_tokens=4,
                         mem_gib=1.0)
    out = capsys.readouterr().out
    assert [r.label for r in runs] == ["local", "1 worker", "2 workers"]
    assert all(r.gen_tok_s > 0 and r.load_s > 0 for r in runs)
    assert runs[1].predicted_tok_s > 0 and runs[2].predicted_tok_s > 0
    assert "gen/local" in out and "predicted/measured" in out and "load average" in out
    assert re.search(r"^2 workers +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$", out,
                     re.MULTILINE), out


@pytest.mark.timeout(600)
def test_grammar_bench_prints_constrained_over_free_ratios() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "grammar", "--reps", "1", "--tokens", "24",
         "--n-ctx", "2048"],
        capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"gen t/s\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d", out), out
    assert re.search(r"ratio json-schema/free generation tokens/s = \d+\.\d{3}", out), out
    assert re.search(r"ratio forced-tool-call/free generation tokens/s = \d+\.\d{3}", out), out


@pytest.mark.timeout(600)
def test_kv_bench_prints_the_restored_over_cold_ratio_and_the_disk() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "kv", "--reps", "1", "--tokens", "600"],
        capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"ratio restored/cold time to first token = \d+\.\d{3}", out), out
    assert re.search(r"disk per conversation \d+\.\d MiB", out), out


@pytest.mark.timeout(600)
def test_tools_bench_runs_a_forced_call_through_the_whole_pipeline() -> None:
    """`lmdesk bench tools`: the real model's turn with a forced calculator call against the
    same turn without tools; the call really runs (no figure is asserted)."""
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "tools", "--reps", "1"],
        capture_output=True, text=True, timeout=500,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"one forced call \d+\.\d ms \(1 call\(s\) run\)", result.stdout), \
        result.stdout
    assert re.search(r"tool loop overhead per call = -?\d+\.\d ms", result.stdout), result.stdout
