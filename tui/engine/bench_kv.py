"""``lmdesk bench kv``: reopening a long conversation, restored from disk against evaluated cold.

Each repetition loads the model with an empty state folder and asks for the next reply of a
conversation of about ``--tokens`` prompt tokens (cold: the whole history is evaluated),
unloads it (which saves the state), loads it again on the same folder and asks the same
(restored). Printed: both times to first token, their ratio (the median of per-repetition
ratios), and the disk one conversation's state takes.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

SAMPLING = SamplingParams(temperature=0.0, top_k=1, max_tokens=8, seed=1)


def conversation(engine: LocalEngine, target: int) -> list[ChatMessage]:
    """A made-up chat of about ``target`` prompt tokens."""
    messages = [ChatMessage("system", "You are a careful assistant for a lighthouse museum.")]
    i = 0
    while engine.count_tokens(messages=messages) < target - 40:
        messages.append(ChatMessage("user", f"Question {i}: what happened at the lighthouse "
                                            f"in year {1800 + i}? Give names and places."))
        messages.append(ChatMessage("assistant", f"In {1800 + i} the keeper of the north "
                                                 "light logged a storm, two ships and a "
                                                 f"rescue led by a sailor called Number {i}."))
        i += 1
    messages.append(ChatMessage("user", "Which year had the worst storm?"))
    return messages


def _ttft(engine: LocalEngine, messages: list[ChatMessage]) -> tuple[float, Done]:
    done = list(engine.generate(messages, SAMPLING))[-1]
    if not isinstance(done, Done) or done.error:
        raise RuntimeError(f"reply failed: {getattr(done, 'error', done)}")
    return done.stats.time_to_first_token_s, done


def run_kv_bench(params: LoadParams, *, reps: int = 2, tokens: int = 4000,
                 out: Callable[[str], None] = print) -> dict[str, float]:
    n_ctx = max(params.n_ctx or 0, tokens + 512)
    cold_s: list[float] = []
    restored_s: list[float] = []
    ratios: list[float] = []
    disk = 0
    out(f"load {os.getloadavg()[0]:.2f}")
    messages: list[ChatMessage] | None = None
    for _rep in range(reps):
        with tempfile.TemporaryDirectory(prefix="lmdesk-kv-bench-") as folder:
            run = replace(params, n_ctx=n_ctx, kv_state_dir=folder)
            with LocalEngine(run) as engine:
                messages = messages or conversation(engine, tokens)
                cold, done = _ttft(engine, messages)
                n_prompt = done.stats.prompt_tokens
            disk = sum(p.stat().st_size for p in Path(folder).glob("*/*.kv"))
            with LocalEngine(run) as engine:
                restored, done = _ttft(engine, messages)
                if done.stats.reused_tokens < n_prompt // 2:
                    raise RuntimeError("the saved state was not used")
        cold_s.append(cold)
        restored_s.append(restored)
        ratios.append(restored / cold if cold > 0 else 0.0)
    results = {"cold_ttft_s": statistics.median(cold_s),
               "restored_ttft_s": statistics.median(restored_s),
               "ratio": statistics.median(ratios), "disk_bytes": float(disk)}
    out(f"conversation {n_prompt:,} prompt tokens, n_ctx {n_ctx:,}, {reps} reps")
    out(f"ttft cold {results['cold_ttft_s']:.2f} s, restored {results['restored_ttft_s']:.3f} s")
    out(f"ratio restored/cold time to first token = {results['ratio']:.3f}")
    out(f"disk per conversation {disk / 2**20:.1f} MiB")
    out(f"load after {os.getloadavg()[0]:.2f}")
    return results
