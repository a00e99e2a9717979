"""``lmdesk bench serve --against URL``: lmdesk serve against another OpenAI-compatible server
(llama-server, Ollama, vLLM, another lmdesk) on the same model and prompt.

Both are driven the same way, as a client sees them: a streamed chat completion, greedy, the
same prompt and token bound; tokens/s between the first and the last text piece, and the time
to the first. Runs alternate which server goes first (a prompt is new to the first one and
new to the second as well: each keeps its own cache), one warm-up each is not counted, and
the median of the per-pair ratios is printed (lmdesk / other: above 1 lmdesk is faster, for
TTFT below 1 is better).

Two phases: a fresh conversation (one short question), and a continuing one (a long history,
then a new question each run; the history is the same every time, so both servers can reuse
its cached prefix as they would in a real chat). They part where attention costs more than
the weights: llama-server turns flash attention on by default ("auto"), which on a CPU is a
little faster with nothing before the question and several times slower a few hundred tokens
into a conversation; lmdesk leaves it off on a CPU.
"""

from __future__ import annotations

import http.client
import json
import statistics
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tui.engine.bench import PROMPT, RunFigures
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

    with allow_network(url):
        other_model = model or _first_model(host, port, base, headers)
        engine = LocalEngine(resolve_load_params(params))
        engine.load()
        pool = EnginePool()
        pool.register(MODEL, engine)
        server = ApiServer(pool, "127.0.0.1", 0).start()
        history: list[ChatMessage] = []
        history_size = 0
        try:
            fresh = _phase(host, port, base, headers, other_model, server.port, reps,
                           max_tokens, [])
            info = engine.info
            room = (info.n_ctx if info else 0) - max_tokens - 256  # the question, the template
            if min(history_tokens, room) > 0:
                history = conversation(engine, min(history_tokens, room))
                history_size = engine.count_tokens(messages=history)
                continuing = _phase(host, port, base, headers, other_model, server.port,
                                    reps, max_tokens, history)
        except (OSError, RuntimeError) as exc:
            raise AgainstError(f"a run failed: {exc}") from None
        finally:
            server.stop()
            engine.unload()

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


def conversation(engine: LocalEngine, tokens: int) -> list[ChatMessage]:
    """A chat history of about ``tokens`` tokens, the same every time."""
    messages: list[ChatMessage] = []
    i = 0
    while not messages or engine.count_tokens(messages=messages) < tokens:
        topic = HISTORY_TOPICS[i % len(HISTORY_TOPICS)]
        messages += [ChatMessage("user", f"Tell me about {topic}."),
                     ChatMessage("assistant", ANSWER.format(topic=topic))]
        i += 1
    return messages


def _phase(host: str, port: int, base: str, headers: dict[str, str], other_model: str,
           our_port: int, reps: int, max_tokens: int, history: list[ChatMessage],
           ) -> tuple[list[RunFigures], list[RunFigures]]:
    ours: list[RunFigures] = []
    theirs: list[RunFigures] = []
    before = [{"role": m.role, "content": m.content} for m in history]
    for i in range(reps + 1):
        prompt = PROMPT.format(i=i)
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
