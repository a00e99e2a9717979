"""``lmdesk bench serve``: what the HTTP API costs, and how it holds up under concurrent clients.

1. Tokens/s streamed through the API against the same engine driven directly: same model,
   prompt and greedy sampling, alternating which goes first, several reps; the median of the
   per-rep ratios is printed (target >= 0.95). Rates are what the consumer sees: text pieces
   received between the first and the last, by the wall clock.
2. N concurrent clients for a bounded time against the one model: every request must be
   answered (a 429 retried with backoff counts as answered once it succeeds); p50 and p99
   latency of the answered requests.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tui.engine.bench import PROMPT, RunFigures, _engine_run
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import LoadParams, SamplingParams
from tui.engine.remote_stream import sse_payloads
from tui.serve.pool import EnginePool
from tui.serve.server import ApiServer

MODEL = "bench"


def _api_run(port: int, prompt: str, sampling: SamplingParams) -> RunFigures:
    """One streamed chat completion over HTTP, timed as the client sees it."""
    body = {
        "model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
        "top_k": sampling.top_k, "seed": sampling.seed,
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"API run failed: {resp.status} {resp.read()[:200]!r}")
        first = last = 0.0
        n = 0
        prompt_rate = 0.0
        for payload in sse_payloads(resp):
            if payload == b"[DONE]":
                break
            obj = json.loads(payload)
            choices = obj.get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                now = time.perf_counter()
                n += 1
                first = first or now
                last = now
            if "timings" in obj:
                prompt_rate = float(obj["timings"]["prompt_per_second"])
    finally:
        conn.close()
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return RunFigures(prompt_rate, rate, first - start, n)


@dataclass
class _Load:
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(port: int, index: int, deadline: float, max_tokens: int, load: _Load) -> None:
    """Send requests until the deadline; retry 429s with backoff until each is answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    k = 0
    try:
        while time.monotonic() < deadline:
            k += 1
            body = json.dumps({
                "model": MODEL, "max_tokens": max_tokens, "temperature": 0.7, "seed": k,
                "messages": [{"role": "user",
                              "content": f"Client {index}, request {k}: a haiku about the sea."}],
            })
            start = time.perf_counter()
            backoff = 0.05
            while True:
                try:
                    conn.request("POST", "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    raw = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    with load.lock:
                        load.failures.append(f"client {index}: {exc!r}")
                    conn.close()
                    break
                if resp.status == 429:
                    with load.lock:
                        load.retries += 1
                    time.sleep(backoff * (1 + random.random()))
                    backoff = min(backoff * 2, 2.0)
                    continue
                with load.lock:
                    if resp.status == 200:
                        load.latencies.append(time.perf_counter() - start)
                        load.tokens += json.loads(raw)["usage"]["completion_tokens"]
                    else:
                        load.failures.append(f"client {index}: {resp.status} {raw[:120]!r}")
                break
    finally:
        conn.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_serve_bench(
    params: LoadParams,
    out: Callable[[str], None] = print,
    *,
    reps: int = 6,
    max_tokens: int = 128,
    clients: int = 8,
    duration_s: float = 20.0,
    client_tokens: int = 32,
) -> dict[str, float]:
    params = resolve_load_params(params)
    engine = LocalEngine(params)
    engine.load()
    pool = EnginePool(queue_depth=clients)
    pool.register(MODEL, engine)
    server = ApiServer(pool, "127.0.0.1", 0).start()
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, seed=1)
    direct: list[RunFigures] = []
    api: list[RunFigures] = []
    load = _Load()
    api_cpu_s = 0.0  # CPU time of this process (server and client) during the API runs
    try:
        # run 0 warms both up and is not counted; an even count of reps lets each side go
        # first (evaluating the prompt afresh, the second run finds it cached) equally often
        for i in range(reps + 1):
            prompt = PROMPT.format(i=i)
            for which in (("engine", "api") if i % 2 == 0 else ("api", "engine")):
                if which == "engine":
                    figures = _engine_run(engine, prompt, sampling)
                else:
                    cpu = time.process_time()
                    figures = _api_run(server.port, prompt, sampling)
                    if i:
                        api_cpu_s += time.process_time() - cpu
                if i:
                    (direct if which == "engine" else api).append(figures)
        deadline = time.monotonic() + duration_s
        started = time.perf_counter()
        threads = [
            threading.Thread(target=_client, args=(server.port, c, deadline, client_tokens, load))
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        server.stop()
        engine.unload()

    def med(runs: list[RunFigures], attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    results = {
        "engine_gen_tps": med(direct, "generation_tokens_per_s"),
        "api_gen_tps": med(api, "generation_tokens_per_s"),
        "engine_ttft_s": med(direct, "time_to_first_token_s"),
        "api_ttft_s": med(api, "time_to_first_token_s"),
        "concurrent_clients": float(clients),
        "concurrent_answered": float(len(load.latencies)),
        "concurrent_failures": float(len(load.failures)),
        "concurrent_retries_429": float(load.retries),
        "latency_p50_s": _percentile(load.latencies, 0.50),
        "latency_p99_s": _percentile(load.latencies, 0.99),
        "concurrent_tokens_per_s": load.tokens / wall if wall > 0 else 0.0,
    }
    # each rep's two runs are back to back, so the median of the per-rep ratios cancels most of
    # the drift in machine load that the ratio of the medians would take in
    pairs = [a.generation_tokens_per_s / d.generation_tokens_per_s
             for a, d in zip(api, direct, strict=True) if d.generation_tokens_per_s > 0]
    results["ratio_gen"] = float(statistics.median(pairs)) if pairs else 0.0
    results["ratio_gen_of_medians"] = (
        results["api_gen_tps"] / results["engine_gen_tps"] if results["engine_gen_tps"] else 0.0
    )
    api_tokens = sum(r.tokens for r in api)
    results["api_cpu_ms_per_token"] = api_cpu_s * 1000 / api_tokens if api_tokens else 0.0
    tokens = statistics.median(r.tokens for r in api)
    out(f"runs       {reps} each, alternated, about {tokens:.0f} tokens per reply (medians)")
    out(f"{'':12}{'engine':>10}{'API':>10}")
    out(f"{'gen t/s':12}{results['engine_gen_tps']:>10.1f}{results['api_gen_tps']:>10.1f}")
    out(f"{'ttft s':12}{results['engine_ttft_s']:>10.3f}{results['api_ttft_s']:>10.3f}")
    spread = f"{min(pairs):.2f}..{max(pairs):.2f}" if pairs else "-"
    out(
        f"ratio      API/engine generation tokens/s = {results['ratio_gen']:.3f} "
        f"(median of the {len(pairs)} back-to-back pairs, range {spread}; "
        f"ratio of the medians {results['ratio_gen_of_medians']:.3f}; target >= 0.95)"
    )
    out(
        f"cost       {results['api_cpu_ms_per_token']:.3f} ms of CPU per streamed token in the "
        "server and client together (the rest is the model)"
    )
    out(
        f"load       {clients} clients for {duration_s:g} s ({wall:.1f} s with the last replies): "
        f"{len(load.latencies)} answered, {len(load.failures)} failed, "
        f"{load.retries} retries after 429"
    )
    out(
        f"latency    p50 {results['latency_p50_s']:.2f} s, p99 {results['latency_p99_s']:.2f} s; "
        f"{results['concurrent_tokens_per_s']:.1f} tokens/s served in all"
    )
    for failure in load.failures[:5]:
        out(f"failure    {failure}")
    return results
