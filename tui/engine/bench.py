"""``lmdesk bench engine``: the worker engine against a bare in-process llama_cpp loop.

Same model, prompt and parameters; runs alternate (engine first, then bare first) so drift in
machine load falls on both. Rates are what the consumer sees: tokens received between the
first token and the end, by the wall clock.

The bare loop runs in a process of its own that imports llama_cpp and generates in-process
(no pipe, no protocol), so the two sides are symmetric: while one generates, the other's
idle thread pool sits in another process, and the bench process itself loads no model.
"""

from __future__ import annotations

import gc
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from tui.engine.gguf import read_header
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm. Run {i}."


@dataclass
class RunFigures:
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    time_to_first_token_s: float
    tokens: int


def _engine_run(engine: LocalEngine, prompt: str, sampling: SamplingParams) -> RunFigures:
    start = time.perf_counter()
    first = last = 0.0
    n = 0
    done: Done | None = None
    for event in engine.generate([ChatMessage("user", prompt)], sampling):
        now = time.perf_counter()
        if isinstance(event, Done):
            done = event
            break
        n += 1
        first = first or now
        last = now
    if done is None or done.error:
        raise RuntimeError(f"engine run failed: {done.error if done else 'no reply'}")
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return RunFigures(done.stats.prompt_tokens_per_s, rate, first - start, n)


def _bare_run(llm: Any, prompt: str, sampling: SamplingParams) -> RunFigures:
    """llama-cpp-python used directly in this process: the same calls the worker makes."""
    import llama_cpp

    start = time.perf_counter()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    stream = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
        seed=sampling.seed,
        stream=True,
    )
    first = last = 0.0
    n = 0
    for chunk in stream:
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            n += 1
            first = first or now
            last = now
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    prompt_rate = perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms > 0 else 0.0
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return RunFigures(prompt_rate, rate, first - start, n)


def _bare_process(conn: Connection, params: LoadParams) -> None:
    """A single process running llama_cpp directly: load, then run each prompt it is sent."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=params.model_path, n_ctx=params.n_ctx or 0, n_threads=params.n_threads,
        n_threads_batch=params.n_threads_batch, n_gpu_layers=params.n_gpu_layers or 0,
        n_batch=params.n_batch, flash_attn=bool(params.flash_attn), seed=params.seed,
        verbose=False,
    )
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            return
        prompt, sampling = request
        conn.send(_bare_run(llm, prompt, sampling))


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


def run_engine_bench(
    params: LoadParams,
    *,
    reps: int = 3,
    max_tokens: int = 128,
    out: Callable[[str], None] = print,
) -> dict[str, float]:
    import psutil

    params = resolve_load_params(params)
    header = read_header(params.model_path)
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, seed=1)
    out(f"model      {header.name} ({header.quantization}, {header.file_size / 2**20:.0f} MiB)")
    out(f"params     n_ctx={params.n_ctx} threads={params.n_threads}/{params.n_threads_batch}")
    engine = LocalEngine(params)
    info = engine.load()
    bare_params = replace(params, n_gpu_layers=info.n_gpu_layers, flash_attn=info.flash_attn)
    ctx = multiprocessing.get_context("spawn")
    bare_conn, child_conn = ctx.Pipe()
    bare = ctx.Process(target=_bare_process, args=(child_conn, bare_params), daemon=True)
    bare.start()
    child_conn.close()
    if bare_conn.recv() != "ready":
        raise RuntimeError("the bare llama_cpp process did not start")
    engine_runs: list[RunFigures] = []
    bare_runs: list[RunFigures] = []
    try:
        for i in range(reps + 1):  # run 0 warms both up and is not counted
            prompt = PROMPT.format(i=i)
            order = ("engine", "bare") if i % 2 == 0 else ("bare", "engine")
            for which in order:
                gc.collect()
                if which == "engine":
                    figures = _engine_run(engine, prompt, sampling)
                    if i:
                        engine_runs.append(figures)
                else:
                    bare_conn.send((prompt, sampling))
                    figures = bare_conn.recv()
                    if i:
                        bare_runs.append(figures)
        worker_rss = psutil.Process(info.worker_pid).memory_info().rss
        cancel_ms = [_cancel_latency(engine) * 1000 for _ in range(reps)]
    finally:
        engine.unload()
        bare_conn.send(None)
        bare.join(timeout=5)
    results = {
        "engine_prompt_tps": _median(engine_runs, "prompt_tokens_per_s"),
        "engine_gen_tps": _median(engine_runs, "generation_tokens_per_s"),
        "engine_ttft_s": _median(engine_runs, "time_to_first_token_s"),
        "bare_prompt_tps": _median(bare_runs, "prompt_tokens_per_s"),
        "bare_gen_tps": _median(bare_runs, "generation_tokens_per_s"),
        "bare_ttft_s": _median(bare_runs, "time_to_first_token_s"),
        "worker_rss_mib": worker_rss / 2**20,
    }
    # each repetition runs the two back to back: the median of their ratios shrugs off load
    # that drifts between repetitions better than the ratio of the two medians does
    results["ratio_gen"] = float(
        statistics.median(
            e.generation_tokens_per_s / b.generation_tokens_per_s
            for e, b in zip(engine_runs, bare_runs, strict=True)
            if b.generation_tokens_per_s > 0
        )
    )
    results["ratio_of_medians"] = results["engine_gen_tps"] / results["bare_gen_tps"]
    bandwidth = memory_bandwidth_gb_s(info.n_threads)
    results["bandwidth_gb_s"] = bandwidth
    results["ceiling_tps"] = bandwidth * 1e9 / header.weights_bytes
    tokens = statistics.median(r.tokens for r in engine_runs)
    out(f"runs       {reps} each, alternated, about {tokens:.0f} tokens per reply (medians below)")
    out(f"{'':12}{'engine':>10}{'bare':>10}")
    out(
        f"{'prompt t/s':12}{results['engine_prompt_tps']:>10.1f}{results['bare_prompt_tps']:>10.1f}"
    )
    out(f"{'gen t/s':12}{results['engine_gen_tps']:>10.1f}{results['bare_gen_tps']:>10.1f}")
    out(f"{'ttft s':12}{results['engine_ttft_s']:>10.3f}{results['bare_ttft_s']:>10.3f}")
    results["cancel_ms_max"] = max(cancel_ms)
    out(f"worker RSS {results['worker_rss_mib']:.0f} MiB")
    out(
        f"cancel     {', '.join(f'{ms:.1f}' for ms in cancel_ms)} ms from cancel() to the "
        "final event (target < 200 ms)"
    )
    out(
        f"ratio      engine/bare generation tokens/s = {results['ratio_gen']:.3f} "
        f"(median of paired runs; ratio of medians {results['ratio_of_medians']:.3f}; "
        "target >= 0.97)"
    )
    out(
        f"ceiling    {bandwidth:.1f} GB/s read / {header.weights_bytes / 2**20:.0f} MiB of weights "
        f"per token = {results['ceiling_tps']:.0f} tokens/s; engine runs at "
        f"{results['engine_gen_tps'] / results['ceiling_tps']:.0%} of it"
    )
    return results
