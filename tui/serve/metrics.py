"""``GET /metrics`` and ``GET /slots`` in llama-server's formats, so whatever reads a
llama-server's figures (a remote-resources panel, Prometheus) reads lmdesk's the same way.

``/metrics``: llama-server's ``llamacpp:*`` series (summed over the models; a llama-server
serves one), then ``lmdesk:*`` series with a ``model`` label. KV use is what the cache holds
after each model's last reply (its prompt and answer, one sequence), over the context.
``/slots``: one slot per model, its context, whether it is generating, and its queue; never a
prompt (llama-server shows them; an API's clients do not see each other's).
"""

from __future__ import annotations

from typing import Any

from tui.serve.pool import ModelEntry
from tui.serve.server import ModelFigures, ServerStats


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def prometheus(stats: ServerStats, models: list[ModelEntry]) -> str:
    figures = stats.model_figures()
    snap = stats.snapshot()
    total = ModelFigures()
    for f in figures.values():
        total.prompt_tokens += f.prompt_tokens
        total.prompt_cached += f.prompt_cached
        total.prompt_seconds += f.prompt_seconds
        total.generated_tokens += f.generated_tokens
        total.generation_seconds += f.generation_seconds
        total.n_tokens_max = max(total.n_tokens_max, f.n_tokens_max)
    busy = sum(1 for m in models if m.busy)
    waiting = sum(max(m.in_flight - (1 if m.busy else 0), 0) for m in models)
    lines: list[str] = []

    def series(name: str, kind: str, help_text: str, value: float) -> None:
        lines.extend([f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}",
                      f"llamacpp:{name} {value:g}"])

    series("prompt_tokens_total", "counter",
           "Number of prompt tokens processed, excluding cached tokens", total.prompt_tokens)
    series("prompt_tokens_cached_total", "counter", "Number of prompt tokens reused from the "
           "cache", total.prompt_cached)
    series("prompt_seconds_total", "counter", "Total time spent processing prompts",
           total.prompt_seconds)
    series("tokens_predicted_total", "counter", "Number of generation tokens processed",
           total.generated_tokens)
    series("tokens_predicted_seconds_total", "counter", "Total time spent generating tokens",
           total.generation_seconds)
    series("n_tokens_max", "counter", "Largest observed sequence length (prompt + generation)",
           total.n_tokens_max)
    series("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s",
           _rate(total.prompt_tokens, total.prompt_seconds))
    series("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s",
           _rate(total.generated_tokens, total.generation_seconds))
    series("requests_processing", "gauge", "Number of requests processing", busy)
    series("requests_deferred", "gauge", "Number of requests deferred", waiting)
    known = [m for m in models if m.n_ctx]
    if known:
        used = sum(figures.get(m.name, ModelFigures()).kv_tokens for m in known if m.loaded)
        size = sum(m.n_ctx for m in known if m.loaded) or 1
        series("kv_cache_tokens", "gauge", "KV cache tokens in use (after the last replies)",
               used)
        series("kv_cache_usage_ratio", "gauge", "KV cache usage, 1 = full", used / size)

    def labelled(name: str, kind: str, help_text: str,
                 values: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP lmdesk:{name} {help_text}", f"# TYPE lmdesk:{name} {kind}"])
        lines.extend(f'lmdesk:{name}{{model="{_escape(model)}"}} {value:g}'
                     for model, value in values)

    names = [m.name for m in models]
    per = {n: figures.get(n, ModelFigures()) for n in names}
    labelled("generation_tokens_per_second", "gauge", "Generation tokens/s of the last reply",
             [(n, per[n].last_generation_tokens_per_s) for n in names])
    labelled("prompt_tokens_per_second", "gauge", "Prompt tokens/s of the last reply",
             [(n, per[n].last_prompt_tokens_per_s) for n in names])
    labelled("replies_total", "counter", "Replies generated", [(n, per[n].replies) for n in names])
    labelled("tokens_predicted_total", "counter", "Tokens generated",
             [(n, per[n].generated_tokens) for n in names])
    labelled("loaded", "gauge", "1 when the model is loaded",
             [(m.name, 1.0 if m.loaded else 0.0) for m in models])
    labelled("queue_length", "gauge", "Requests generating or waiting",
             [(m.name, m.in_flight) for m in models])
    labelled("kv_cache_tokens", "gauge", "KV cache tokens after the last reply",
             [(n, per[n].kv_tokens) for n in names])
    labelled("n_ctx", "gauge", "Context window in tokens", [(m.name, m.n_ctx) for m in models])
    for name, kind, help_text, value in (
        ("requests_total", "counter", "HTTP requests answered", snap.requests),
        ("errors_total", "counter", "Answers with a 4xx or 5xx status", snap.errors),
        ("rejected_total", "counter", "Requests refused with 429 (a full queue)", snap.rejected),
        ("connections_refused_total", "counter", "Connections refused with 503 (too many)",
         snap.refused),
        ("replies_failed_total", "counter", "Replies that ended in an error", snap.failed),
        ("replies_cancelled_total", "counter", "Replies stopped early", snap.cancelled),
    ):
        lines.extend([f"# HELP lmdesk:{name} {help_text}", f"# TYPE lmdesk:{name} {kind}",
                      f"lmdesk:{name} {value:g}"])
    return "\n".join(lines) + "\n"


def slots(stats: ServerStats, models: list[ModelEntry]) -> list[dict[str, Any]]:
    figures = stats.model_figures()
    out = []
    for index, m in enumerate(models):
        f = figures.get(m.name, ModelFigures())
        out.append({
            "id": index,
            "id_task": -1,
            "model": m.name,
            "n_ctx": m.n_ctx,
            "speculative": False,
            "is_processing": m.busy,
            "loaded": m.loaded,
            "queued": max(m.in_flight - (1 if m.busy else 0), 0),
            "n_prompt_tokens_processed": f.prompt_tokens,
            "n_prompt_tokens_cache": f.prompt_cached,
            "kv_cache_tokens": f.kv_tokens,
            "next_token": [{"has_next_token": m.busy, "has_new_line": False,
                            "n_remain": -1, "n_decoded": f.generated_tokens}],
        })
    return out
