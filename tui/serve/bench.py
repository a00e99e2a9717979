"""``lmdesk bench serve``: what the HTTP API costs, and how it holds up under concurrent clients.

1. Tokens/s streamed through the API against the same engine driven directly: same model,
   prompt and greedy sampling, alternating which goes first, several reps; the median of the
   per-rep ratios is printed (target >= 0.95). Rates are what the consumer sees: text pieces
   received between the first and the last, by the wall clock.
2. N concurrent clients for a bounded time against the one model: every request must be
   answered (a 429 retried with backoff counts as answered once it succeeds); p50 and p99
   latency of the answered requests.
3. JSON-schema-constrained generation against unconstrained, through the API (same prompt,
   alternated): the ratio of tokens/s is what the grammar costs.
4. Embeddings per second for 1,000 short texts, through ``POST /v1/embeddings`` and through
   ``engine.embed`` directly (the ratio is what the API costs).

``--against URL`` compares lmdesk serve with another OpenAI-compatible server instead
(``tui.serve.bench_against``).
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
from typing import Any

from tui.engine.base import Embedder
from tui.engine.bench import PROMPT, RunFigures, _engine_run
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import LoadParams, SamplingParams
from tui.engine.remote_stream import sse_payloads
from tui.serve.pool import EnginePool
from tui.serve.server import ApiServer

MODEL = "bench"


def stream_run(host: str, port: int, body: dict[str, Any], path: str = "/v1/chat/completions",
               headers: dict[str, str] | None = None) -> RunFigures:
    """One streamed chat completion over HTTP, timed as the client sees it: tokens/s between
    the first and the last text piece, time to the first."""
    conn = http.client.HTTPConnection(host, port, timeout=300)
    try:
        start = time.perf_counter()
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json", **(headers or {})})
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
            if isinstance(obj.get("timings"), dict):
                prompt_rate = float(obj["timings"].get("prompt_per_second") or 0.0)
    finally:
        conn.close()
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return RunFigures(prompt_rate, rate, first - start if first else 0.0, n)


def _api_run(port: int, prompt: str, sampling: SamplingParams,
             extra: dict[str, Any] | None = None) -> RunFigures:
    body = {
        "model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
        "top_k": sampling.top_k, "seed": sampling.seed, **(extra or {}),
    }
    return stream_run("127.0.0.1", port, body)


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
    embed_texts: int = 1000,
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
        structured = _structured_runs(server.port, sampling, reps)
        embedding = _embedding_runs(server.port, engine, embed_texts)
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
    results.update(structured)
    if structured.get("schema_ratio"):
        out(f"schema     JSON-schema-constrained/unconstrained generation tokens/s = "
            f"{structured['schema_ratio']:.3f} ({structured['schema_tps']:.1f} against "
            f"{structured['free_tps']:.1f}; median of {reps} alternated pairs)")
    else:
        out(f"schema     not measured: {structured.get('schema_error', 'no tokens')}")
    results.update({k: v for k, v in embedding.items() if isinstance(v, float)})
    if "embed_api_per_s" in embedding:
        out(f"embed      {embed_texts:,} short texts: {embedding['embed_api_per_s']:.0f}/s "
            f"through the API, {embedding['embed_engine_per_s']:.0f}/s from the engine; "
            f"API/engine = {embedding['embed_ratio']:.3f}")
    else:
        out(f"embed      not measured: {embedding.get('error')}")
    return results


BENCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"chapters": {"type": "array", "minItems": 8, "items": {
        "type": "object",
        "properties": {"title": {"type": "string", "maxLength": 40},
                       "mood": {"enum": ["calm", "stormy", "grim", "bright"]},
                       "pages": {"type": "integer"}},
        "required": ["title", "mood", "pages"]}}},
    "required": ["chapters"],
}


def _structured_runs(port: int, sampling: SamplingParams, reps: int) -> dict[str, Any]:
    """The same prompt with and without a JSON schema, alternated: tokens/s of each."""
    fmt = {"response_format": {"type": "json_schema", "json_schema": {
        "name": "book", "schema": BENCH_SCHEMA}}}
    prompt = "Plan a book about a lighthouse keeper as JSON: chapters with title, mood, pages."
    free: list[float] = []
    constrained: list[float] = []
    pairs: list[float] = []
    try:
        _api_run(port, prompt, sampling, fmt)  # warm-up, not counted
        for i in range(reps):
            order = (False, True) if i % 2 == 0 else (True, False)
            rates = {}
            for with_schema in order:
                figures = _api_run(port, prompt, sampling, fmt if with_schema else None)
                rates[with_schema] = figures.generation_tokens_per_s
            free.append(rates[False])
            constrained.append(rates[True])
            if rates[False] > 0:
                pairs.append(rates[True] / rates[False])
    except RuntimeError as exc:
        return {"schema_error": str(exc)[:160]}
    return {
        "schema_tps": float(statistics.median(constrained)) if constrained else 0.0,
        "free_tps": float(statistics.median(free)) if free else 0.0,
        "schema_ratio": float(statistics.median(pairs)) if pairs else 0.0,
    }


def _embedding_runs(port: int, engine: LocalEngine, count: int) -> dict[str, Any]:
    """``count`` short texts embedded through the API (one request) and directly,
    alternated."""
    if not isinstance(engine, Embedder):
        return {"error": "this engine cannot embed"}
    texts = [f"Short note {i}: the {('tide', 'lamp', 'storm', 'gull')[i % 4]} at {i % 24} h."
             for i in range(count)]
    api_s: list[float] = []
    direct_s: list[float] = []
    try:
        engine.embed(texts[:16])  # warm-up
        for i in range(2):
            for which in (("api", "engine") if i % 2 == 0 else ("engine", "api")):
                start = time.perf_counter()
                if which == "engine":
                    engine.embed(texts)
                    direct_s.append(time.perf_counter() - start)
                    continue
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                try:
                    conn.request("POST", "/v1/embeddings",
                                 json.dumps({"model": MODEL, "input": texts}),
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    raw = resp.read()
                finally:
                    conn.close()
                if resp.status != 200:
                    return {"error": f"{resp.status} {raw[:160]!r}"}
                api_s.append(time.perf_counter() - start)
    except Exception as exc:  # a bench reports what it could not measure
        return {"error": f"{type(exc).__name__}: {exc}"[:160]}
    api_rate = count / statistics.median(api_s)
    engine_rate = count / statistics.median(direct_s)
    return {"embed_api_per_s": api_rate, "embed_engine_per_s": engine_rate,
            "embed_ratio": api_rate / engine_rate if engine_rate else 0.0}
