"""The lines under a reply: its figures, the sources it cites, a compare run's results, and
the collapsed reasoning line. Plain functions of the stored message, shared by the chat log
and the screens that show replies."""

from __future__ import annotations

from typing import Any

from tui.display import count
from tui.i18n import _, format_number
from tui.store import StoredMessage


def reasoning_line(tokens: int, seconds: float, *, done: bool, expanded: bool = False) -> str:
    """"thinking… 312 tokens, 4 s" while the model thinks; "▸ thought for 4 s · 312 tokens"
    after (▾ when the reasoning is shown in full)."""
    spent = count(tokens, "token")
    if not done:
        return _("thinking… {spent}, {seconds:.0f} s", spent=spent, seconds=seconds)
    mark = "▾" if expanded else "▸"
    return _("{mark} thought for {seconds:.1f} s · {spent}",
             mark=mark, seconds=seconds, spent=spent)


def stats_line(message: StoredMessage) -> str:
    """``model · 120 tokens · 88.4 tok/s · ttft 0.14 s`` plus how the reply ended."""
    parts: list[str] = []
    stats = message.stats or {}
    model = message.model or stats.get("model")
    if model:
        profile = stats.get("profile")
        parts.append(f"{model} ({profile})" if isinstance(profile, str) and profile
                     else str(model))
    if stats and isinstance(stats.get("compare"), dict):
        parts.append(compare_stats_line(stats))
    elif stats:
        parts.append(count(int(stats.get("generated_tokens", 0)), "token"))
        rate = format_number(float(stats.get("generation_tokens_per_s", 0.0)), 1)
        ttft = format_number(float(stats.get("time_to_first_token_s", 0.0)), 2)
        parts.append(f"{rate} tok/s")
        parts.append(f"ttft {ttft} s")
        if stats.get("stop_reason") == "length":
            parts.append(_("cut at max tokens"))
    if message.status == "stopped":
        parts.append(_("stopped"))
    elif message.status == "partial":
        parts.append(_("unfinished"))
    elif message.status == "error":
        parts.append(_("error: {error}", error=message.error or _("the reply failed")))
    return " · ".join(parts)


def compare_stats_line(stats: dict[str, Any]) -> str:
    """``compare (together): smollm2 12 tok 80.1 tok/s · gemma 12 tok 60.2 tok/s``."""
    info = stats.get("compare")
    if not isinstance(info, dict):
        return ""
    parts = []
    for r in info.get("results", []):
        if not isinstance(r, dict):
            continue
        if r.get("error"):
            parts.append(_("{model} error", model=r.get("model")))
        else:
            tokens = count(int(r.get("generated_tokens", 0)), "token")
            rate = format_number(float(r.get("generation_tokens_per_s", 0.0)), 1)
            parts.append(f"{r.get('model')} {tokens} {rate} tok/s")
    mode = info.get("mode", "?")
    shown = (_("together") if mode == "together" else
             _("one after the other") if mode == "one after the other" else str(mode))
    return _("compare ({mode}): {results}", mode=shown, results=" · ".join(parts))


def source_dicts(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    sources = (stats or {}).get("sources")
    if not isinstance(sources, list):
        return []
    return [s for s in sources if isinstance(s, dict) and s.get("path")]


def source_label(source: dict[str, Any]) -> str:
    label = source.get("label")
    if label:
        return str(label)
    start, end = source.get("start", 1), source.get("end", source.get("start", 1))
    return f"{source['path']}:{start}" if start == end else f"{source['path']}:{start}-{end}"


def sources_line(stats: dict[str, Any] | None) -> str:
    """``Sources: [1] notes.md:12-30  [2] ...`` for the footer of a reply; empty if none."""
    sources = source_dicts(stats)
    if not sources:
        return ""
    parts = [f"[{s.get('n', i + 1)}] {source_label(s)}" for i, s in enumerate(sources)]
    return "Sources: " + "  ".join(parts)
