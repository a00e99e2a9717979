"""``lmdesk bench lookup``: prompt lookup (draftless speculative decoding) on against off.

Three tasks on one loaded model at temperature 0: a rewrite (a 120-line Python file, made
here deterministically, to be repeated with one identifier renamed), where the reply copies
from its context and lookup should pay, with no repeat penalty (it works against copying:
llama-server's and OpenAI's temperature 0 have none); the same rewrite at lmdesk's default
repeat penalty, under which this small model's copy strays; and a free-form answer at the
default, where lookup should cost nothing. Each repetition runs both ways, alternating which
goes first. Lookup runs only where it gives plain decoding's very reply; on the CPU that is
one thread with flash attention, which the bench loads unless told otherwise. Rates are
generated tokens after the first over the time from the first to the last (the worker's
clock), so the drafts' checking and sampling are in them; ratios are the median of
per-repetition ratios. The outputs must be byte-identical: that is printed too (every
measured run starts from the same cache). First it measures what a draft's batch costs here
against one token: with every draft right, lookup can gain no more than that allows.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from tui.engine.bench import reply_rate
from tui.engine.local import LocalEngine
from tui.engine.lookup import DRAFT_LENGTHS
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

OLD_NAME = "ledger"
NEW_NAME = "journal"
FREE_PROMPT = "Tell me about the history of lighthouses and how their keepers lived."
_VERBS = ("add", "remove", "count", "merge", "scale", "clip", "sort", "find")
_NOUNS = ("entry", "amount", "total", "label", "limit", "offset", "weight", "score")


def python_file(lines: int = 120, seed: int = 7) -> str:
    """A made-up Python module of exactly ``lines`` lines that uses ``OLD_NAME`` often."""
    rng = random.Random(seed)
    out = ['"""Bookkeeping helpers."""', "", "from __future__ import annotations", ""]
    i = 0
    while len(out) < lines:
        verb, noun = rng.choice(_VERBS), rng.choice(_NOUNS)
        k = rng.randrange(2, 20)
        out += [
            "",
            f"def {verb}_{noun}_{i}({OLD_NAME}: list[int], {noun}: int = {k}) -> int:",
            f'    """{verb.capitalize()} the {noun} in the {OLD_NAME} (step {i})."""',
            "    result = 0",
            f"    for item in {OLD_NAME}:",
            f"        if item > {noun}:",
            f"            result += item * {k}",
            f"    return result + len({OLD_NAME})",
        ]
        i += 1
    return "\n".join(out[:lines]) + "\n"


def rewrite_messages(lines: int = 120) -> list[ChatMessage]:
    source = python_file(lines)
    return [ChatMessage("user", (
        f"Here is a Python file:\n\n```python\n{source}```\n\n"
        f"Repeat the whole file exactly, with the identifier `{OLD_NAME}` renamed to "
        f"`{NEW_NAME}` everywhere. Output only the code."))]


COST_SIZES = tuple(n + 1 for n in DRAFT_LENGTHS)
"""The batches that check each draft length the policy uses, with the token before it."""


def batch_cost_ratios(params: LoadParams, *, context: int = 1200,
                      sizes: Sequence[int] = COST_SIZES, reps: int = 9) -> dict[int, float]:
    """What a batch of n tokens costs over one token's decode, ``context`` tokens into this
    bench's file (medians of ``reps``): what bounds lookup's gain on this machine. Loads
    llama.cpp: call it in a process of its own (``batch_cost_ratios_apart``)."""
    from tui.engine.native import ContextOptions, NativeContext, NativeModel, backend_init

    backend_init()
    model = NativeModel(params.model_path, n_gpu_layers=params.n_gpu_layers or 0)
    threads = params.n_threads or 1
    ctx = NativeContext(model, ContextOptions(
        n_ctx=context + max(sizes) + 64, n_batch=max(512, max(sizes)), n_threads=threads,
        n_threads_batch=threads, flash_attn=params.flash_attn))
    try:
        text = python_file()
        tokens = model.tokenize(text, add_special=True, parse_special=False)
        while len(tokens) < context + max(sizes):
            tokens += model.tokenize(text, add_special=False, parse_special=False)
        ctx.decode_many(tokens[:context])
        times: dict[int, list[float]] = {n: [] for n in (1, *sizes)}
        for _ in range(reps):
            for n, seen in times.items():
                start = time.perf_counter()
                if n == 1:
                    ctx.decode_one(tokens[context])
                else:
                    ctx.decode_all_logits(tokens[context:context + n])
                seen.append(time.perf_counter() - start)
                ctx.keep_prefix(context)
        one = statistics.median(times[1])
        return {n: statistics.median(times[n]) / one for n in sizes}
    finally:
        ctx.close()
        model.close()


def batch_cost_ratios_apart(params: LoadParams, *, context: int = 1200,
                            reps: int = 9) -> dict[int, float]:
    """``batch_cost_ratios`` in a spawned process (llama.cpp never loads into the caller)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        job = pool.submit(batch_cost_ratios, params, context=context, reps=reps)
        return job.result(timeout=600)


def best_case_speedup(ratios: dict[int, float]) -> float:
    """Lookup's gain with every draft right: n tokens for the price of a batch of n."""
    return max((n / ratio for n, ratio in ratios.items() if ratio > 0), default=1.0)


def run_lookup_bench(params: LoadParams, *, reps: int = 3, max_tokens: int = 600,
                     out: Callable[[str], None] = print) -> dict[str, float]:
    greedy = SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, seed=1)
    penalty = greedy.repeat_penalty
    tasks = {  # key: (what is printed, messages, sampling)
        "rewrite": ("rewrite", rewrite_messages(), replace(greedy, repeat_penalty=1.0)),
        "penalised": (f"rewrite, repeat penalty {penalty:g}", rewrite_messages(), greedy),
        "free-form": ("free-form", [ChatMessage("user", FREE_PROMPT)], greedy),
    }
    results: dict[str, float] = {}
    # lookup runs only where it gives plain decoding's reply (generation.lookup_is_exact):
    # on the CPU, one thread with flash attention, unless the caller chose otherwise
    threads = params.n_threads or 1
    run = replace(params, n_ctx=max(params.n_ctx or 0, 4096), n_threads=threads,
                  n_threads_batch=params.n_threads_batch or threads)
    with LocalEngine(run) as engine:
        info = engine.info
        assert info is not None
        out(f"model {info.name}, {info.n_threads} threads, flash attention "
            f"{'on' if info.flash_attn else 'off'}, {reps} reps x up to {max_tokens} tokens, "
            f"load {os.getloadavg()[0]:.2f}")
        costs = batch_cost_ratios_apart(replace(
            run, model_path=info.path, n_threads=info.n_threads, flash_attn=info.flash_attn))
        best_case = best_case_speedup(costs)
        out("a batch here, 1,200 tokens in, over one token's decode: "
            + ", ".join(f"{n} tokens {r:.2f}x" for n, r in costs.items())
            + f"; with every draft right lookup gives at most {best_case:.2f}x")
        results["best_case"] = best_case
        for key, (task, messages, sampling) in tasks.items():
            ratios: list[float] = []
            rates: dict[bool, list[float]] = {True: [], False: []}
            texts: dict[bool, set[str]] = {True: set(), False: set()}
            drafted = accepted = generated = 0
            # an untimed run first, so every measured one starts from the same cache (the
            # prompt kept, its last token evaluated again): a cold first run evaluates the
            # whole prompt in one batch, which rounds differently from the warm ones
            list(engine.generate(messages, replace(sampling, prompt_lookup=False)))
            for rep in range(reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                got: dict[bool, float] = {}
                for on in order:
                    done = list(engine.generate(messages, replace(sampling, prompt_lookup=on)))[-1]
                    if not isinstance(done, Done) or done.error:
                        raise RuntimeError(f"{task} run failed: {getattr(done, 'error', done)}")
                    got[on] = reply_rate(done)
                    rates[on].append(got[on])
                    texts[on].add(done.text)
                    if on:
                        drafted += done.stats.drafted_tokens
                        accepted += done.stats.accepted_tokens
                        generated += done.stats.generated_tokens
                if got[False] > 0:
                    ratios.append(got[True] / got[False])
            ratio = statistics.median(ratios) if ratios else 0.0
            same = len(texts[True]) == 1 and texts[True] == texts[False]
            target = 1.5 if key == "rewrite" else 0.97
            out(f"{task}: lookup {statistics.median(rates[True]):.1f} t/s, plain "
                f"{statistics.median(rates[False]):.1f} t/s, {generated // reps} tokens, "
                f"drafted {drafted // reps}, accepted {accepted // reps}")
            out(f"ratio lookup/plain tokens/s ({task}) = {ratio:.3f}  (target >= {target})")
            out(f"identical output ({task}): {'yes' if same else 'no'}")
            if key == "rewrite" and not drafted:
                out("nothing drafted: lookup is off here (on this model and backend a batch's "
                    "logits differ from one token's: try --threads 1), or no draft paid")
            results[f"ratio_{key}"] = ratio
            results[f"identical_{key}"] = float(same)
    out(f"load after {os.getloadavg()[0]:.2f}")
    return results
