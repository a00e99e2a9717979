"""Timing a model here with the real engine: a warm-up, then a few short replies sampled as a
chat reply samples, several models side by side with their replies alternated."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tui.i18n import _
from tui.models.calibration import RunFigures

# -- measuring a model -------------------------------------------------------------------------

MEASURE_PROMPT = (
    "Run {i}. Here is a short passage to read first. A lighthouse keeper kept a logbook of "
    "every ship that passed the cape, the weather of each morning, the oil burned each night "
    "and the birds that rested on the gallery rail. Over thirty years the logbook grew into "
    "twelve volumes, and the keeper's granddaughter, who inherited them, decided to turn the "
    "notes into a story. Now continue that story at length, in plain prose."
)


@dataclass(frozen=True)
class MeasuredSpeed:
    """A model's speed here, measured with the real engine (the best of a few runs)."""

    gen_tok_s: float
    prompt_tok_s: float
    prompt_tokens: int
    evaluated_prompt_tokens: int
    generated_tokens: int
    n_threads: int
    n_gpu_layers: int
    n_ctx: int
    runs: tuple[float, ...]
    """Every counted run's generation rate."""

    def to_stats(self) -> RunFigures:
        return RunFigures(self.prompt_tokens, self.prompt_tok_s, self.generated_tokens,
                      self.gen_tok_s, self.evaluated_prompt_tokens)


def measure_speed(
    path: str | os.PathLike[str],
    *,
    n_ctx: int | None = None,
    tokens: int = 32,
    runs: int = 2,
    temperature: float = 0.7,
) -> MeasuredSpeed:
    """Load ``path`` in a model worker and time ``runs`` replies of ``tokens`` tokens after a
    short warm-up (sampling as a chat reply samples). The best run counts: other work on the
    machine only ever slows a run down."""
    return measure_speeds([path], n_ctx=n_ctx, tokens=tokens, runs=runs,
                          temperature=temperature)[0]


def measure_speeds(
    paths: Sequence[str | os.PathLike[str]],
    *,
    n_ctx: int | None = None,
    tokens: int = 32,
    runs: int = 2,
    temperature: float = 0.7,
) -> list[MeasuredSpeed]:
    """``measure_speed`` for several models loaded side by side, their runs alternated, so a
    change in the machine's load falls on all of them alike."""
    from contextlib import ExitStack

    from tui.engine.local import LocalEngine
    from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

    sampling = SamplingParams(max_tokens=tokens, temperature=temperature, seed=1,
                              ignore_eos=True)
    warm_up = SamplingParams(max_tokens=8, temperature=temperature, seed=1, ignore_eos=True)
    with ExitStack() as stack:
        engines = []
        for path in paths:
            engine = stack.enter_context(LocalEngine(LoadParams(model_path=str(path),
                                                                n_ctx=n_ctx)))
            engines.append((engine, engine.load()))
        best: list[Any] = [None] * len(engines)
        rates: list[list[float]] = [[] for _engine in engines]
        for i in range(runs + 1):
            for j, (engine, info) in enumerate(engines):
                text = MEASURE_PROMPT.format(i=i)
                raw = None if info.chat_template else text
                asked = warm_up if i == 0 else sampling
                done: Done | None = None
                for event in engine.generate([ChatMessage("user", text)], asked,
                                             raw_prompt=raw):
                    if isinstance(event, Done):
                        done = event
                if done is None or done.error:
                    raise RuntimeError(
                        _("the measuring reply failed: {value}",
                          value=done.error if done else 'no reply'))
                if i == 0:
                    continue  # the warm-up run pages the weights in
                rates[j].append(done.stats.generation_tokens_per_s)
                if best[j] is None or (done.stats.generation_tokens_per_s
                                       > best[j].generation_tokens_per_s):
                    best[j] = done.stats
    out = []
    for (_engine, info), stats, rs in zip(engines, best, rates, strict=True):
        out.append(MeasuredSpeed(
            gen_tok_s=float(stats.generation_tokens_per_s),
            prompt_tok_s=float(stats.prompt_tokens_per_s),
            prompt_tokens=int(stats.prompt_tokens),
            evaluated_prompt_tokens=int(stats.evaluated_prompt_tokens),
            generated_tokens=int(stats.generated_tokens), n_threads=int(info.n_threads),
            n_gpu_layers=int(info.n_gpu_layers), n_ctx=int(info.n_ctx), runs=tuple(rs),
        ))
    return out
