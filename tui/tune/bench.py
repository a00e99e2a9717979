"""``lmdesk bench tune``: training speed and memory at two ranks, and what an adapter costs the
engine, measured in one run on the packaged SmolLM2 (figures and ratios, no thresholds)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tui.tune.errors import TuneError

PROMPT = "Explain in a few sentences why the sky is blue."
_QUESTIONS = ("What is the capital of France?", "How many legs does a spider have?",
              "What do bees make?", "What is water made of?", "Name a primary colour.",
              "What is the opposite of hot?", "What animal says meow?",
              "What is frozen water called?", "What do plants need to grow?",
              "How many months are in a year?")


def _pairs_file(folder: Path, n: int) -> Path:
    import json

    path = folder / "pairs.jsonl"
    rows = [{"instruction": q, "response": f"A short answer to: {q} Over and out."}
            for q in (_QUESTIONS * (n // len(_QUESTIONS) + 1))[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _train(folder: Path, base: Path, rank: int, pairs: Path) -> tuple[float, int, float, str,
                                                                     int]:
    from tui.store import Store
    from tui.tune.protocol import Failed, Finished, TrainParams
    from tui.tune.run import PairsSource, Tuner, TuneSpec

    data = folder / f"data-r{rank}"
    spec = TuneSpec(f"bench-r{rank}", str(base), base.stem, PairsSource.from_file(pairs),
                    TrainParams(epochs=1, rank=rank, holdout=0.0))
    started = time.perf_counter()
    with Store.open(data) as store:
        tuner = Tuner(data, store, log_dir=folder)
        job = tuner.start(tuner.plan(spec))
        last: object = None
        for event in job.events():
            last = event
    if isinstance(last, Failed):
        raise TuneError(last.message)
    assert isinstance(last, Finished)
    return (last.tokens_per_s, last.peak_rss_bytes, time.perf_counter() - started,
            last.adapter_path, last.adapter_bytes)


def _gen_rate(base: Path, lora: str | None, reps: int, tokens: int) -> float:
    from tui.engine.local import LocalEngine
    from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

    engine = LocalEngine(LoadParams(model_path=str(base), n_ctx=1024, lora_path=lora))
    engine.load()
    sampling = SamplingParams(temperature=0.0, max_tokens=tokens, seed=0)
    rates = []
    try:
        for _ in range(reps):
            for event in engine.generate([ChatMessage("user", PROMPT)], sampling):
                if isinstance(event, Done):
                    rates.append(event.stats.generation_tokens_per_s)
    finally:
        engine.unload()
    return statistics.median(rates)


def run_tune_bench(base: Path, *, pairs: int = 40, reps: int = 5, tokens: int = 96) -> int:
    try:
        _bench(base, pairs, reps, tokens)
    except TuneError as exc:
        print(f"lmdesk: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _bench(base: Path, pairs: int, reps: int, tokens: int) -> None:
    from tui.tune.plan import require_extra

    require_extra()
    load = os.getloadavg()[0]
    print(f"lmdesk bench tune: {base.name}, {pairs} pairs, 1 epoch per rank; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs at the start")
    with tempfile.TemporaryDirectory(prefix="lmdesk-bench-tune-") as tmp:
        folder = Path(tmp)
        path = _pairs_file(folder, pairs)
        adapter = ""
        for rank in (8, 16):
            rate, peak, wall, lora, size = _train(folder, base, rank, path)
            adapter = adapter or lora
            print(f"  train rank {rank:>2}: {rate:7.1f} tok/s  peak {peak / 2**20:6.0f} MiB  "
                  f"wall {wall:6.1f} s (with load and export)  adapter {size / 2**20:.1f} MiB")
        plain = _gen_rate(base, None, reps, tokens)
        tuned = _gen_rate(base, adapter, reps, tokens)
        print(f"  engine without adapter {plain:7.1f} tok/s")
        print(f"  engine with rank-8     {tuned:7.1f} tok/s  ratio {tuned / plain:.2f}")
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")
