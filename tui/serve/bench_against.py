"""``lmdesk bench serve --against URL``: lmdesk serve against another OpenAI-compatible server
(llama-server, Ollama, vLLM, another lmdesk) on the same model and prompt.

Both are driven the same way, as a client sees them: a streamed chat completion, greedy, the
same prompt and token bound; tokens/s between the first and the last text piece, and the time
to the first. lmdesk serve runs in a process of its own, as ``lmdesk serve`` does, so the
client's work is not done under its interpreter lock. Runs alternate which server goes first,
one warm-up each is not counted, and the median of the per-pair ratios is printed (lmdesk /
other: above 1 lmdesk is faster, for TTFT below 1 is better).

Every prompt carries a tag drawn for this run: a server that keeps earlier prompts' states
(llama-server's prompt cache holds gigabytes of them in memory) would otherwise answer a
prompt it saw in an earlier run with nothing to evaluate, and its time to first token would
measure its memory, not its speed. Each prompt is new to both servers.

Two phases: a fresh conversation (one short question), and a continuing one (a long history,
then a new question each run; the history is the same every time, so both servers can reuse
its cached prefix as they would in a real chat). They part where attention costs more than
the weights.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import secrets
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from tui.engine.bench import PROMPT, RunFigures
from tui.engine.errors import EngineError
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import ChatMessage, LoadParams
from tui.serve.bench import stream_run
from tui.serve.pool import EnginePool
from tui.serve.server import ApiServer

MODEL = "bench"
HISTORY_TOPICS = (
    "the tides", "a lighthouse lens", "storm petrels", "fog signals", "the keeper's logbook",
    "paraffin lamps", "shipwrecks on the reef", "the supply boat", "winter on the rock",
    "the last keeper", "automatic lights", "the keeper's children", "rowing in a swell",
    "a night of fog", "the clockwork that turned the light", "radio at sea",
)
ANSWER = ("Here is what I know about {topic}. Keepers wrote about {topic} in their logs every "
          "season, noting the hour, the weather, the state of the sea and anything unusual "
          "that they saw from the gallery. Over the years those notes became a record that "
          "historians still read, because they describe {topic} more carefully than any "
          "other source from the time, in plain words and with numbers that can be checked.")


class AgainstError(Exception):
    """The other server cannot be benchmarked; the message says why."""


def _base(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise AgainstError(f"--against needs an http:// URL of an OpenAI-compatible server, "
                           f"got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return parts.hostname, parts.port or 80, path


def _first_model(host: str, port: int, base: str, headers: dict[str, str]) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", base + "/models", headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as exc:
        raise AgainstError(f"cannot reach {host}:{port}: {exc}") from None
    finally:
        conn.close()
    try:
        data = json.loads(raw).get("data") or []
        return str(data[0]["id"])
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        raise AgainstError(f"{host}:{port}{base}/models lists no model (HTTP {resp.status}); "
                           "name one with --against-model") from None


def run_against_bench(
    params: LoadParams, url: str, out: Callable[[str], None] = print, *,
    model: str | None = None, api_key: str | None = None, reps: int = 6, max_tokens: int = 128,
    history_tokens: int = 1500,
) -> dict[str, float]:
    """Print and return the medians and the per-pair ratios of both phases (keys of the
    continuing conversation start with ``history_``; none when ``history_tokens`` is 0)."""
    host, port, base = _base(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    from tui.offline import allow_network

    tag = secrets.token_hex(3)
    try:
        params = resolve_load_params(params)
    except EngineError as exc:
        raise AgainstError(f"lmdesk serve could not load the model: {exc}") from None
    with allow_network(url):
        other_model = model or _first_model(host, port, base, headers)
        with _lmdesk_serve(params) as (our_port, n_ctx):
            history: list[ChatMessage] = []
            history_size = 0
            try:
                fresh = _phase(host, port, base, headers, other_model, our_port, reps,
                               max_tokens, [], tag)
                room = n_ctx - max_tokens - 256  # the question, the template
                if min(history_tokens, room) > 0:
                    history = conversation(lambda m: _count_tokens(our_port, m),
                                           min(history_tokens, room))
                    history_size = _count_tokens(our_port, history)
                    continuing = _phase(host, port, base, headers, other_model, our_port,
                                        reps, max_tokens, history, tag)
            except (OSError, RuntimeError) as exc:
                raise AgainstError(f"a run failed: {exc}") from None

    results = _figures(*fresh)
    tokens = statistics.median(r.tokens for r in fresh[0] + fresh[1])
    out(f"against    {url} (model {other_model}); {reps} runs each, alternated, about "
        f"{tokens:.0f} tokens per reply")
    _print(out, results)
    if history:
        more = _figures(*continuing)
        out(f"history    the same after a {history_size}-token conversation (its prefix "
            "cached on both sides)")
        _print(out, more, continuing=True)
        results.update({f"history_{key}": value for key, value in more.items()})
        results["history_tokens"] = float(history_size)
    return results


def conversation(count_tokens: Callable[[list[ChatMessage]], int],
                 tokens: int) -> list[ChatMessage]:
    """A chat history of about ``tokens`` tokens (as ``count_tokens`` counts a history), the
    same every time."""
    messages: list[ChatMessage] = []
    i = 0
    while not messages or count_tokens(messages) < tokens:
        topic = HISTORY_TOPICS[i % len(HISTORY_TOPICS)]
        messages += [ChatMessage("user", f"Tell me about {topic}."),
                     ChatMessage("assistant", ANSWER.format(topic=topic))]
        i += 1
    return messages


def _count_tokens(port: int, messages: list[ChatMessage]) -> int:
    """A history's prompt tokens as lmdesk serve's model counts them (its ``/tokenize``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/tokenize", json.dumps({
            "model": MODEL, "messages": [{"role": m.role, "content": m.content}
                                         for m in messages]}),
            {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"/tokenize failed: {resp.status} {raw[:200]!r}")
    return int(json.loads(raw)["count"])


@contextmanager
def _lmdesk_serve(params: LoadParams) -> Iterator[tuple[int, int]]:
    """lmdesk serve on ``params`` in a process of its own: yields its (port, n_ctx)."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    child = spawn.Process(target=_serve_apart, args=(params, theirs), name="lmdesk-bench-serve")
    child.start()
    theirs.close()
    try:
        try:
            started = ours.recv()
        except EOFError:
            raise AgainstError("lmdesk serve could not start (its process ended)") from None
        if isinstance(started, str):
            raise AgainstError(started)
        yield started
    finally:
        ours.close()  # the child stops its server and unloads when its end reads EOF
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()


def _serve_apart(params: LoadParams, conn: Connection) -> None:
    """The child: load the model, serve it on a free loopback port, send (port, n_ctx), and
    serve until the parent hangs up."""
    engine = LocalEngine(params)
    try:
        engine.load()
    except EngineError as exc:
        conn.send(f"lmdesk serve could not load the model: {exc}")
        return
    pool = EnginePool()
    pool.register(MODEL, engine)
    server = ApiServer(pool, "127.0.0.1", 0).start()
    try:
        conn.send((server.port, engine.info.n_ctx if engine.info else 0))
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
    finally:
        server.stop()
        engine.unload()


def _phase(host: str, port: int, base: str, headers: dict[str, str], other_model: str,
           our_port: int, reps: int, max_tokens: int, history: list[ChatMessage], tag: str,
           ) -> tuple[list[RunFigures], list[RunFigures]]:
    ours: list[RunFigures] = []
    theirs: list[RunFigures] = []
    before = [{"role": m.role, "content": m.content} for m in history]
    for i in range(reps + 1):
        prompt = PROMPT.format(i=f"{tag}-{i}")
        for which in (("lmdesk", "other") if i % 2 == 0 else ("other", "lmdesk")):
            body: dict[str, Any] = {
                "stream": True, "max_tokens": max_tokens, "temperature": 0,
                "top_k": 1, "seed": 1,
                "messages": [*before, {"role": "user", "content": prompt}],
            }
            if which == "lmdesk":
                figures = stream_run("127.0.0.1", our_port, {**body, "model": MODEL})
            else:
                figures = stream_run(host, port, {**body, "model": other_model},
                                     base + "/chat/completions", headers)
            if i:
                (ours if which == "lmdesk" else theirs).append(figures)
    return ours, theirs


def _figures(ours: list[RunFigures], theirs: list[RunFigures]) -> dict[str, float]:
    def med(runs: list[RunFigures], attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    gen = [a.generation_tokens_per_s / b.generation_tokens_per_s
           for a, b in zip(ours, theirs, strict=True) if b.generation_tokens_per_s > 0]
    ttft = [a.time_to_first_token_s / b.time_to_first_token_s
            for a, b in zip(ours, theirs, strict=True) if b.time_to_first_token_s > 0]
    return {
        "lmdesk_gen_tps": med(ours, "generation_tokens_per_s"),
        "other_gen_tps": med(theirs, "generation_tokens_per_s"),
        "lmdesk_ttft_s": med(ours, "time_to_first_token_s"),
        "other_ttft_s": med(theirs, "time_to_first_token_s"),
        "ratio_gen": float(statistics.median(gen)) if gen else 0.0,
        "ratio_ttft": float(statistics.median(ttft)) if ttft else 0.0,
    }


def _print(out: Callable[[str], None], results: dict[str, float], *,
           continuing: bool = False) -> None:
    out(f"{'':12}{'lmdesk':>10}{'other':>10}")
    out(f"{'gen t/s':12}{results['lmdesk_gen_tps']:>10.1f}{results['other_gen_tps']:>10.1f}")
    out(f"{'ttft s':12}{results['lmdesk_ttft_s']:>10.3f}{results['other_ttft_s']:>10.3f}")
    out(f"ratio      {'after the conversation, ' if continuing else ''}lmdesk/other generation "
        f"tokens/s = {results['ratio_gen']:.3f}, time to first token = "
        f"{results['ratio_ttft']:.3f} (medians of the pairs)")
