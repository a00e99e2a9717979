"""``lmdesk bench engine``: the worker engine against two references on the same model.

- native: the worker's own low-level loop called in one process (no pipe, no protocol, no
  caller): the engine's target is >= 0.97 of it;
- old: llama-cpp-python's high-level ``create_completion`` on the same prompt tokens, the
  engine's loop before this one: the engine's target is >= 1.10x of it;
- before: that old loop with the old engine's load defaults as well (flash attention only
  with layers on a GPU), what ``lmdesk`` generated at before; shown when they differ.

Same prompt and greedy parameters; each repetition runs the three back to back in a rotating
order, so drift in machine load falls on all; ratios are the median of per-repetition ratios.
Rates are what the consumer sees: tokens received after the first one, over the time from
the first to the last, by the wall clock. Each reference lives in a process of its own, so
while one generates the others' idle thread pools sit elsewhere, and the bench process itself
loads no model.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from tui.engine.gguf import read_header
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams, TextDelta
from tui.engine.reference import Reference, ReferenceRun

PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm. Run {i}."
SIDES = ("engine", "native", "old")


@dataclass
class RunFigures:
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    time_to_first_token_s: float
    tokens: int


def reply_rate(done: Done) -> float:
    """A reply's generation tokens/s from its stats: the tokens after the first over the time
    after the first."""
    s = done.stats
    span = s.total_seconds - s.time_to_first_token_s
    return (s.generated_tokens - 1) / span if s.generated_tokens > 1 and span > 0 else 0.0


def _engine_run(engine: LocalEngine, prompt: str, sampling: SamplingParams) -> RunFigures:
    start = time.perf_counter()
    first = last = 0.0
    n = after_first = 0
    done: Done | None = None
    for event in engine.generate([ChatMessage("user", prompt)], sampling):
        now = time.perf_counter()
        if isinstance(event, Done):
            done = event
            break
        if not isinstance(event, TextDelta):
            continue
        if n:
            after_first += event.n_tokens
        n += event.n_tokens
        first = first or now
        last = now
    if done is None or done.error:
        raise RuntimeError(f"engine run failed: {done.error if done else 'no reply'}")
    rate = after_first / (last - first) if after_first and last > first else 0.0
    return RunFigures(done.stats.prompt_tokens_per_s, rate, first - start, n)


def _reference_run(ref: Reference, prompt: str, sampling: SamplingParams) -> RunFigures:
    run: ReferenceRun = ref.run([ChatMessage("user", prompt)], sampling)
    span = run.last_delta_s - run.first_delta_s
    rate = run.tokens_after_first / span if run.tokens_after_first and span > 0 else 0.0
    return RunFigures(run.prompt_tokens_per_s, rate, run.first_delta_s,
                      run.tokens_after_first + 1)


def _prompt_cancel_latency(engine: LocalEngine, rep: int) -> float | None:
    """Seconds from ``cancel()`` to the final event while a long prompt is being evaluated;
    None when the prompt was done before the cancel came (a fast GPU)."""
    import threading

    n_ctx = engine.info.n_ctx if engine.info else 2048
    # about 4 tokens a word: the prompt fills most of the context
    words = f"Take {rep}. " + " ".join(f"w{i}" for i in range(max(n_ctx // 5, 64)))
    asked: list[float] = []

    def cancel_soon() -> None:
        time.sleep(0.05)
        asked.append(time.perf_counter())
        engine.cancel()

    threading.Thread(target=cancel_soon, daemon=True).start()
    for event in engine.generate([ChatMessage("user", words)], SamplingParams(max_tokens=4)):
        if isinstance(event, Done):
            if event.stats.stop_reason != "cancelled" or not asked:
                return None
            return time.perf_counter() - asked[0]
    raise RuntimeError("the prompt-cancel run gave no final event")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _cancel_latency(engine: LocalEngine) -> float:
    """Seconds from ``cancel()`` (called after a few tokens) to the final event."""
    sampling = SamplingParams(max_tokens=4000, seed=7)
    asked = 0.0
    stream = engine.generate([ChatMessage("user", "Tell me a very long story.")], sampling)
    for n, event in enumerate(stream, start=1):
        if isinstance(event, Done):
            if event.stats.stop_reason != "cancelled":
                raise RuntimeError(f"the cancel run ended with {event.stats.stop_reason}")
            return time.perf_counter() - asked
        if n == 8:
            asked = time.perf_counter()
            engine.cancel()
    raise RuntimeError("the cancel run gave no final event")


def memory_bandwidth_gb_s(threads: int, size_mb: int = 256) -> float:
    """Read bandwidth: the best of a few parallel sums over an array larger than the caches."""
    import numpy as np

    data = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    chunks = np.array_split(data, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            t0 = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = max(best, data.nbytes / (time.perf_counter() - t0))
    return best / 1e9


def _median(runs: list[RunFigures], attr: str) -> float:
    return float(statistics.median(float(getattr(r, attr)) for r in runs))


def _paired_ratio(a: list[RunFigures], b: list[RunFigures]) -> float:
    return float(statistics.median(
        x.generation_tokens_per_s / y.generation_tokens_per_s
        for x, y in zip(a, b, strict=True) if y.generation_tokens_per_s > 0))


def _embed_rate(engine: LocalEngine, n_texts: int) -> float:
    """Texts per second for ``n_texts`` short texts, embedded in one call."""
    texts = [f"Note {i}: the meeting about topic {i % 17} moved to room {i % 9}."
             for i in range(n_texts)]
    engine.embed(texts[:8])  # the embedding context is made on first use: not timed
    start = time.perf_counter()
    engine.embed(texts)
    return n_texts / (time.perf_counter() - start)


def run_engine_bench(
    params: LoadParams,
    *,
    reps: int = 3,
    max_tokens: int = 128,
    embed_texts: int = 1000,
    out: Callable[[str], None] = print,
) -> dict[str, float]:
    import psutil

    params = resolve_load_params(params)
    header = read_header(params.model_path)
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, seed=1)
    out(f"model      {header.name} ({header.quantization}, {header.file_size / 2**20:.0f} MiB)")
    engine = LocalEngine(params)
    info = engine.load()
    out(f"params     n_ctx={params.n_ctx} threads={params.n_threads}/{params.n_threads_batch} "
        f"gpu_layers={info.n_gpu_layers} flash_attention={'on' if info.flash_attn else 'off'}")
    ref_params = replace(params, n_gpu_layers=info.n_gpu_layers, flash_attn=info.flash_attn)
    old_default_fa = info.gpu_backend and info.n_gpu_layers != 0
    sides = SIDES if info.flash_attn == old_default_fa else (*SIDES, "before")
    refs: dict[str, Reference] = {}
    runs: dict[str, list[RunFigures]] = {side: [] for side in sides}
    try:
        refs["native"] = Reference(ref_params, "native")
        refs["old"] = Reference(ref_params, "old")
        if "before" in sides:
            refs["before"] = Reference(replace(ref_params, flash_attn=old_default_fa), "old")
        for i in range(reps + 1):  # run 0 warms all up and is not counted
            prompt = PROMPT.format(i=i)
            order = sides[i % len(sides):] + sides[: i % len(sides)]
            for side in order:
                gc.collect()
                if side == "engine":
                    figures = _engine_run(engine, prompt, sampling)
                else:
                    figures = _reference_run(refs[side], prompt, sampling)
                if i:
                    runs[side].append(figures)
        worker_rss = psutil.Process(info.worker_pid).memory_info().rss
        cancel_ms = [_cancel_latency(engine) * 1000 for _ in range(reps)]
        prompt_cancel_ms = [_ms(_prompt_cancel_latency(engine, i)) for i in range(reps)]
        embed_rate = _embed_rate(engine, embed_texts) if embed_texts else 0.0
    finally:
        engine.unload()
        for ref in refs.values():
            ref.close()
    results: dict[str, float] = {"worker_rss_mib": worker_rss / 2**20}
    for side in sides:
        results[f"{side}_prompt_tps"] = _median(runs[side], "prompt_tokens_per_s")
        results[f"{side}_gen_tps"] = _median(runs[side], "generation_tokens_per_s")
        results[f"{side}_ttft_s"] = _median(runs[side], "time_to_first_token_s")
    results["ratio_native"] = _paired_ratio(runs["engine"], runs["native"])
    results["ratio_old"] = _paired_ratio(runs["engine"], runs["old"])
    results["ratio_gen"] = results["ratio_native"]
    if "before" in sides:
        results["ratio_before"] = _paired_ratio(runs["engine"], runs["before"])
    bandwidth = memory_bandwidth_gb_s(info.n_threads)
    results["bandwidth_gb_s"] = bandwidth
    results["ceiling_tps"] = bandwidth * 1e9 / header.weights_bytes
    results["cancel_ms_max"] = max(cancel_ms)
    results["prompt_cancel_ms_max"] = max((ms for ms in prompt_cancel_ms if ms is not None),
                                          default=0.0)
    results["embed_texts_per_s"] = embed_rate
    tokens = statistics.median(r.tokens for r in runs["engine"])
    out(f"runs       {reps} each, rotated, about {tokens:.0f} tokens per reply (medians below)")
    out(f"{'':12}" + "".join(f"{side:>10}" for side in sides))
    for label, key, fmt in (("prompt t/s", "prompt_tps", ".1f"), ("gen t/s", "gen_tps", ".1f"),
                            ("ttft s", "ttft_s", ".3f")):
        out(f"{label:12}" + "".join(f"{results[f'{side}_{key}']:>10{fmt}}" for side in sides))
    out(f"worker RSS {results['worker_rss_mib']:.0f} MiB")
    out(
        f"cancel     {', '.join(f'{ms:.1f}' for ms in cancel_ms)} ms from cancel() to the "
        "final event while generating; "
        f"{', '.join('-' if ms is None else f'{ms:.1f}' for ms in prompt_cancel_ms)} ms "
        "during a long prompt (target < 200 ms; '-': the prompt was done first)"
    )
    out(
        f"ratio      engine/native generation tokens/s = {results['ratio_native']:.3f} "
        "(median of paired runs; target >= 0.97)"
    )
    out(
        f"ratio      engine/old generation tokens/s = {results['ratio_old']:.3f} "
        "(the old high-level loop; target >= 1.10)"
    )
    if "before" in sides:
        out(
            f"ratio      engine/before generation tokens/s = {results['ratio_before']:.3f} "
            f"(the old loop with the old defaults: flash attention "
            f"{'on' if old_default_fa else 'off'}, here {'on' if info.flash_attn else 'off'})"
        )
    if embed_texts:
        out(f"embed      {embed_rate:.0f} texts/s ({embed_texts:,} short texts in one call)")
    out(
        f"ceiling    {bandwidth:.1f} GB/s read / {header.weights_bytes / 2**20:.0f} MiB of weights "
        f"per token = {results['ceiling_tps']:.0f} tokens/s; engine runs at "
        f"{results['engine_gen_tps'] / results['ceiling_tps']:.0%} of it"
    )
    return results
