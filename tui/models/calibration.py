"""The speed calibration kept in the data folder: the machine probe and the runs measured here
(replies, bench runs, ``lmdesk models info --measure``), in ``speed-calibration.json``.

``speed_model(data_dir)`` gives the ``SpeedModel`` for this machine; ``calibrate_from_reply``
is what a finished reply calls (from a worker thread: it reads the model's GGUF header once
per file).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.i18n import _
from tui.models.fit import ModelShape
from tui.models.probe import cpu_label, measure_machine, physical_cores
from tui.models.speed import (
    MachineSpeed,
    Run,
    SpeedModel,
    TokenCost,
    model_key,
    runs_by_model,
)

if TYPE_CHECKING:
    from tui.models.measure import MeasuredSpeed

CALIBRATION_FILE = "speed-calibration.json"
CALIBRATION_VERSION = 1
MACHINE_MAX_AGE_S = 30 * 24 * 3600
"""A machine probe older than this is taken again."""
MAX_RUNS = 400
MIN_GENERATED = 16
"""Replies shorter than this are too short to time (their rate is mostly the first token)."""


# -- the calibration file ------------------------------------------------------------------------


@dataclass
class Calibration:
    """The machine probe and the measured runs, kept in the data folder."""

    path: Path | None
    machine: MachineSpeed | None = None
    runs: list[Run] = field(default_factory=list)
    problem: str | None = None
    """Why the file could not be read (it is then started afresh, the old one kept aside)."""

    @classmethod
    def load(cls, data_dir: Path | None) -> Calibration:
        if data_dir is None:
            return cls(None)
        path = data_dir / CALIBRATION_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            return cls(path, problem=_("{path}: unreadable ({exc}); starting afresh",
                                       path=path, exc=exc))
        try:
            if not isinstance(raw, dict) or raw.get("version") != CALIBRATION_VERSION:
                raise TypeError(_("unknown version"))
            machine = _machine_from(raw.get("machine"))
            runs = [_run_from(r) for r in raw.get("runs") or []]
        except (TypeError, ValueError, KeyError) as exc:
            return cls(path, problem=_("{path}: unreadable ({exc}); starting afresh",
                                       path=path, exc=exc))
        return cls(path, machine, [r for r in runs if r is not None])

    def save(self) -> None:
        if self.path is None:
            return
        payload = {"version": CALIBRATION_VERSION,
                   "machine": asdict(self.machine) if self.machine else None,
                   "runs": [asdict(r) for r in self.runs[-MAX_RUNS:]]}
        with contextlib.suppress(OSError):
            from tui.config import ensure_private_dir

            ensure_private_dir(self.path.parent)  # the data folder: the owner's only
            fd, tmp = tempfile.mkstemp(prefix=".speed-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(payload, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def _machine_from(data: Any) -> MachineSpeed | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(_("machine is not an object"))
    names = {f.name for f in fields(MachineSpeed)}
    return MachineSpeed(**{k: v for k, v in data.items() if k in names})


def _run_from(data: Any) -> Run | None:
    if not isinstance(data, dict):
        return None
    names = {f.name for f in fields(Run)}
    try:
        run = Run(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None
    ok = run.gen_tok_s >= 0 and run.prompt_tok_s >= 0 and run.read_bytes > 0
    return run if ok and math.isfinite(run.gen_tok_s) and math.isfinite(run.prompt_tok_s) else None


_FILE_LOCK = threading.Lock()


def _stale(machine: MachineSpeed | None) -> bool:
    if machine is None or machine.bandwidth_gb_s <= 0 or machine.gflops <= 0:
        return True
    if time.time() - machine.measured_at > MACHINE_MAX_AGE_S:
        return True
    return machine.cpu != cpu_label() or machine.threads != physical_cores()


def speed_model(data_dir: Path | None, *, refresh: bool = False) -> SpeedModel:
    """The machine probe (measured now when missing, stale or asked) and the runs kept."""
    with _FILE_LOCK:
        cal = Calibration.load(data_dir)
        if refresh or _stale(cal.machine):
            old, new = cal.machine, measure_machine()
            if old is not None and old.cpu == new.cpu and old.threads == new.threads:
                # a probe on a busy machine reads low: keep the best this machine has shown
                new = replace(new, bandwidth_gb_s=max(old.bandwidth_gb_s, new.bandwidth_gb_s),
                              gflops=max(old.gflops, new.gflops))
            cal.machine = new
            cal.save()
    assert cal.machine is not None
    return SpeedModel(cal.machine, cal.runs)


# -- recording runs --------------------------------------------------------------------------------


def record_run(data_dir: Path | None, run: Run) -> None:
    """Keep one measured run (the oldest beyond the limits are dropped)."""
    if data_dir is None:
        return
    with _FILE_LOCK:
        cal = Calibration.load(data_dir)
        cal.runs = [*cal.runs, replace(run, at=run.at or time.time())]
        per_key = runs_by_model(cal.runs)
        cal.runs = sorted((r for rs in per_key.values() for r in rs), key=lambda r: r.at)
        cal.save()


@lru_cache(maxsize=32)
def _shape_of_file(path: str, size: int, mtime_ns: int) -> ModelShape:
    from tui.models.fit import shape_of

    return shape_of(path)


def shape_for_path(path: str | os.PathLike[str]) -> ModelShape | None:
    """The shape of a GGUF file (read once per file version); None when unreadable."""
    from tui.engine.gguf import GGUFError

    try:
        st = os.stat(path)
        return _shape_of_file(str(path), st.st_size, st.st_mtime_ns)
    except (OSError, GGUFError, ValueError, ZeroDivisionError):
        return None


def run_from_stats(
    shape: ModelShape, key: str, stats: Any, *, n_threads: int, n_gpu_layers: int,
    source: str,
) -> Run | None:
    """A Run from a reply's ``GenerationStats``; None when it is too short to time."""
    if stats.generated_tokens < MIN_GENERATED or stats.generation_tokens_per_s <= 0:
        return None
    if getattr(stats, "stop_reason", "stop") == "error":
        return None
    cost = TokenCost.of(shape)
    layers = shape.n_layers
    on_gpu = layers if n_gpu_layers < 0 else min(n_gpu_layers, layers)
    return Run(
        key=key, read_bytes=cost.read_bytes, kv_bytes_per_token=cost.kv_bytes_per_token,
        n_layers=cost.n_layers, vocab_size=cost.vocab_size, active_params=cost.active_params,
        n_threads=n_threads, n_gpu_layers=on_gpu,
        gen_tok_s=float(stats.generation_tokens_per_s),
        prompt_tok_s=float(stats.prompt_tokens_per_s or 0.0),
        prompt_tokens=int(stats.prompt_tokens), generated_tokens=int(stats.generated_tokens),
        evaluated_prompt_tokens=int(getattr(stats, "evaluated_prompt_tokens", 0) or 0),
        source=source, at=time.time(), gpu_layer_share=on_gpu / layers if layers else 0.0,
    )


def calibrate_from_reply(data_dir: Path | None, info: Any, stats: Any, *,
                         source: str = "reply") -> bool:
    """Calibrate from a finished reply: ``info`` the loaded model's ``ModelInfo``, ``stats``
    its ``GenerationStats``. Reads the model's GGUF header once per file (call it off the UI
    thread). Returns whether the run was kept (short, failed or remote replies are not)."""
    path = getattr(info, "path", "")
    if data_dir is None or not path or not os.path.isfile(path):
        return False
    shape = shape_for_path(path)
    if shape is None:
        return False
    run = run_from_stats(shape, model_key(path), stats, n_threads=int(info.n_threads),
                         n_gpu_layers=int(info.n_gpu_layers), source=source)
    if run is None:
        return False
    record_run(data_dir, run)
    return True


def record_bench(data_dir: Path | None, model_path: str, gen_tok_s: float, *,
                 n_threads: int | None = None, n_gpu_layers: int = 0,
                 tokens: int = 128) -> bool:
    """Calibrate from a bench run (``lmdesk bench engine``): its median generation rate."""
    shape = shape_for_path(model_path)
    if data_dir is None or shape is None or gen_tok_s <= 0:
        return False
    stats = RunFigures(0, 0.0, tokens, gen_tok_s, 0)
    run = run_from_stats(shape, model_key(model_path), stats,
                         n_threads=n_threads or physical_cores(), n_gpu_layers=n_gpu_layers,
                         source="bench")
    if run is None:
        return False
    record_run(data_dir, run)
    return True


@dataclass(frozen=True)
class RunFigures:
    prompt_tokens: int
    prompt_tokens_per_s: float
    generated_tokens: int
    generation_tokens_per_s: float
    evaluated_prompt_tokens: int
    stop_reason: str = "length"


def record_measured(data_dir: Path | None, path: str | os.PathLike[str],
                    measured: MeasuredSpeed, *, source: str = "measure") -> bool:
    shape = shape_for_path(path)
    if data_dir is None or shape is None:
        return False
    run = run_from_stats(shape, model_key(path), measured.to_stats(),
                         n_threads=measured.n_threads, n_gpu_layers=measured.n_gpu_layers,
                         source=source)
    if run is None:
        return False
    record_run(data_dir, run)
    return True
