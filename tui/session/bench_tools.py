"""``lmdesk bench tools``: what the tool loop itself costs per call, the model's time left out.

On the real model through the whole reply pipeline (``run_turn``: the prompt built, the worker
process, the chat template with the tools, the call parsed, approved, run, its result added to
the history and the template rendered again for the next round), a turn with one forced call
of the calculator and the same turn with no tools, alternated. The model's own time (prompt
evaluation and generation, the worker's clock in each round's stats) is taken out of each
turn's wall time; what is left with the call, less what is left without it, is the loop's
overhead for that call.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams, SamplingParams, ToolCallDelta
from tui.session.choice import ResolvedModel
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.request import BuiltPrompt, for_prompt
from tui.session.turn import ToolUse, TurnOutcome, run_turn
from tui.store import LocalModel
from tui.tools.builtin import calculator_tool

PROMPT = "What is 1234 * 5678? Use the calculator, then answer in one sentence."


class _Quiet:
    """A turn's sink that keeps nothing."""

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        pass

    def reasoning(self, text: str, n_tokens: int) -> None:
        pass

    def text(self, text: str, n_tokens: int) -> None:
        pass

    def tool_call(self, delta: ToolCallDelta) -> None:
        pass


def _model_seconds(outcome: TurnOutcome) -> float:
    dones = [*outcome.done_before, *([outcome.done] if outcome.done is not None else [])]
    return sum(d.stats.total_seconds for d in dones)


def run_tools_bench(params: LoadParams, *, reps: int = 6, max_tokens: int = 48,
                    out: Callable[[str], None] = print) -> dict[str, float]:
    calculator = calculator_tool()
    session = ModelSession(lambda p: LocalEngine(p))
    overheads: dict[str, list[float]] = {"plain": [], "tool": []}
    calls: list[int] = []
    try:
        name = Path(params.model_path).stem
        model = ResolvedModel(LocalModel(params.model_path, name), params.model_path, name,
                              params)
        if session.switch(model) is None:
            raise RuntimeError(session.last_error or "the model did not load")
        out(f"model {model.name}, {reps} reps, load {os.getloadavg()[0]:.2f}")
        for rep in range(reps):
            sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=rep + 1)
            for side in (("plain", "tool") if rep % 2 == 0 else ("tool", "plain")):
                use = None if side == "plain" else ToolUse(
                    [calculator], lambda _call, _tool: "once", choice="calculator",
                    max_steps=1)
                request = for_prompt(PROMPT, sampling, memory=False)
                started = time.perf_counter()
                outcome = run_turn(session, request, _Quiet(), threading.Event(), use)
                wall = time.perf_counter() - started
                if outcome.error:
                    raise RuntimeError(f"the {side} turn failed: {outcome.error}")
                overheads[side].append(wall - _model_seconds(outcome))
                if side == "tool":
                    calls.append(len(outcome.steps))
    finally:
        session.close()
    plain = statistics.median(overheads["plain"])
    with_call = statistics.median(overheads["tool"])
    made = statistics.median(calls) if calls else 0
    per_call = (with_call - plain) / made if made else 0.0
    out(f"turn overhead outside the model: no tools {plain * 1000:.1f} ms, "
        f"one forced call {with_call * 1000:.1f} ms ({made:.0f} call(s) run)")
    out(f"tool loop overhead per call = {per_call * 1000:.1f} ms   (generation excluded)")
    out(f"load after {os.getloadavg()[0]:.2f}")
    return {"overhead_plain_s": plain, "overhead_tool_s": with_call,
            "overhead_per_call_ms": per_call * 1000, "calls": float(made)}
