"""``lmdesk bench grammar``: constrained generation against free generation on one prompt.

Three ways on the same loaded model and prompt, rotating which goes first each repetition:
free text; output under a JSON schema (a grammar); a forced tool call (the tools' schemas
as a grammar, and the call's markup). Rates are generated tokens after the first over the
time from the first to the last, by the worker's wall clock, so the grammar's cost (paid in
sampling, which llama.cpp's decode counters leave out) is in them. Ratios are the median of
per-repetition ratios against free text.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import replace

from tui.engine.bench import reply_rate
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams, ToolSpec

PROMPT = "List twelve fruits with their colours, then say which is the sweetest."
FRUITS = json.dumps({"type": "object", "properties": {
    "fruits": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "colour": {"type": "string"}},
        "required": ["name", "colour"]}},
    "sweetest": {"type": "string"}}, "required": ["fruits", "sweetest"]})
RECORD = ToolSpec("record_fruits", "Record fruits and their colours.", FRUITS)
SIDES = ("free", "json", "tool")


def run_grammar_bench(params: LoadParams, *, reps: int = 6, max_tokens: int = 128,
                      out: Callable[[str], None] = print) -> dict[str, float]:
    messages = [ChatMessage("user", PROMPT)]
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    tokens: dict[str, list[int]] = {side: [] for side in SIDES}
    ratios: dict[str, list[float]] = {"json": [], "tool": []}
    with LocalEngine(params) as engine:
        info = engine.info
        assert info is not None
        out(f"model {info.name}, {info.n_threads} threads, {reps} reps x {max_tokens} tokens, "
            f"load {os.getloadavg()[0]:.2f}")
        for rep in range(reps):
            sampling = SamplingParams(temperature=0.7, max_tokens=max_tokens, seed=rep + 1)
            order = SIDES[rep % 3:] + SIDES[:rep % 3]
            got: dict[str, float] = {}
            for side in order:
                if side == "json":
                    events = engine.generate(messages, replace(sampling, json_schema=FRUITS))
                elif side == "tool":
                    events = engine.generate(messages, sampling, tools=[RECORD],
                                             tool_choice=RECORD.name)
                else:
                    events = engine.generate(messages, sampling)
                done = list(events)[-1]
                if not isinstance(done, Done) or done.error:
                    raise RuntimeError(f"{side} run failed: {getattr(done, 'error', done)}")
                got[side] = reply_rate(done)
                rates[side].append(got[side])
                tokens[side].append(done.stats.generated_tokens)
            for side in ratios:
                if got["free"] > 0:
                    ratios[side].append(got[side] / got["free"])
    results = {f"{side}_tps": statistics.median(rates[side]) for side in SIDES}
    results.update({f"ratio_{side}": statistics.median(ratios[side]) if ratios[side] else 0.0
                    for side in ratios})
    out(f"{'':12}{'free':>10}{'json':>10}{'tool':>10}")
    out(f"{'gen t/s':12}" + "".join(f"{results[f'{s}_tps']:>10.1f}" for s in SIDES))
    out(f"{'tokens':12}" + "".join(f"{statistics.median(tokens[s]):>10.0f}" for s in SIDES))
    out(f"ratio json-schema/free generation tokens/s = {results['ratio_json']:.3f}")
    out(f"ratio forced-tool-call/free generation tokens/s = {results['ratio_tool']:.3f}")
    out(f"load after {os.getloadavg()[0]:.2f}")
    return results
