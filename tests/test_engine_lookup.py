"""Prompt lookup: its proposer and draft policy (pure Python over token ids), then the loop's drafts
on the real model, whose replies must be the very replies of plain decoding."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tui.engine.bench_lookup import (
    COST_SIZES,
    FREE_PROMPT,
    batch_cost_ratios_apart,
    best_case_speedup,
    python_file,
    rewrite_messages,
)
from tui.engine.local import LocalEngine
from tui.engine.lookup import DRAFT_LENGTHS, BatchCosts, DraftPolicy, PromptLookup
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams


def test_the_tokens_after_the_earlier_match_are_proposed() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 7, 9, 9, 1, 2, 3], max_draft=3)
    assert lookup.propose() == [4, 5, 6]
    assert lookup.propose(limit=2) == [4, 5]


def test_no_match_proposes_nothing() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5])
    assert lookup.propose() == []
    assert PromptLookup([]).propose() == []
    assert PromptLookup([7]).propose() == []


def test_the_longest_ngram_wins_over_a_later_shorter_one() -> None:
    # "2 3" then 4 at the start; later "3" alone is followed by 8; the tail is "2 3"
    lookup = PromptLookup([2, 3, 4, 4, 3, 8, 0, 2, 3], max_draft=1)
    assert lookup.propose() == [4]
    # with only one token of the tail matching, the latest occurrence of it counts, where
    # single tokens are looked up at all: by default they are not (they predict too seldom)
    short = [2, 3, 4, 4, 3, 8, 0, 5, 3]
    assert PromptLookup(short, max_draft=1, min_ngram=1).propose() == [8]
    assert PromptLookup(short, max_draft=1).propose() == []


def test_of_several_matches_the_one_reaching_furthest_back_wins() -> None:
    #   a: 7 1 2 3 -> 40      b: 9 9 9 1 2 3 -> 50 (more recent)      tail: 9 9 9 1 2 3
    history = [7, 1, 2, 3, 40, 0, 9, 9, 9, 1, 2, 3, 50, 0, 5, 1, 2, 3, 60, 0, 9, 9, 9, 1, 2, 3]
    assert PromptLookup(history, max_draft=1).propose() == [50]
    # among equally long matches, the most recent
    assert PromptLookup([1, 2, 3, 40, 1, 2, 3, 50, 1, 2, 3], max_draft=1).propose() == [50]


def test_a_copy_is_followed_without_searching_again() -> None:
    source = list(range(100, 130))
    lookup = PromptLookup([*source, 0, *source[:3]], max_draft=4)
    assert lookup.propose() == source[3:7]
    lookup.extend(source[3:7])  # accepted
    assert lookup.propose() == source[7:11]
    lookup.push(999)  # the reply leaves the copy: the next draft is searched for again
    assert lookup.propose() == []


def test_drafts_stop_at_the_end_of_the_history() -> None:
    lookup = PromptLookup([5, 6, 7, 5, 6], max_draft=8)
    assert lookup.propose() == [7, 5, 6]  # what followed, up to the end


def _costs(one: float, per_size: dict[int, float]) -> BatchCosts:
    costs = BatchCosts()
    costs.single(one)
    for n, seconds in per_size.items():
        costs.batch(n, seconds)
    return costs


# measured here (2-core CPU, one thread, 1,200 tokens in): a batch of n over one token
CPU = {2: 1.96, 4: 3.35, 7: 5.75, 11: 8.19}
FLAT = {4: 1.05, 7: 1.1, 11: 1.15}  # a GPU: a batch costs about what one token does


def _sure(policy: DraftPolicy, following: bool, hits: int, misses: int = 0) -> None:
    for _ in range(hits):
        policy.record(following, 10, 10)
    for _ in range(misses):
        policy.record(following, 10, 0)


def test_costs_are_relative_to_one_token_and_sizes_not_seen_are_hoped_for() -> None:
    costs = _costs(0.02, {4: 0.067})
    assert costs.ratio(1) == 1.0
    assert costs.ratio(4) == pytest.approx(3.35)
    assert costs.ratio(11) == pytest.approx(1 + BatchCosts.PRIOR_SLOPE * 10)
    costs.batch(4, 0.02)  # a moving average, not the last figure
    assert 1.0 < costs.ratio(4) < 3.35
    assert BatchCosts().ratio(4) == 1 + BatchCosts.PRIOR_SLOPE * 3  # nothing measured


def test_where_batches_are_dear_only_a_near_certain_copy_is_drafted() -> None:
    costs = _costs(1.0, CPU)
    likely = DraftPolicy(costs)
    _sure(likely, True, hits=9, misses=1)  # 90 of 91 tokens came true: q ~ 0.99
    assert likely.length(True, 10) == 10  # 10 tokens for the price of 8.2
    usual = DraftPolicy(costs)
    _sure(usual, True, hits=1, misses=1)  # one draft in two ran to its end: q ~ 0.85
    assert usual.length(True, 10) == 0  # 1 + .85 + .85^2 ... < 1.05 x the batch's cost
    assert likely.length(True, 3) == 3  # room for three: still worth it, nearly certain
    assert usual.length(True, 3) == 0
    assert likely.length(False, 10) == 0  # fresh matches judged apart: nothing known, q 0.5


def test_where_batches_are_cheap_even_a_doubtful_draft_pays() -> None:
    policy = DraftPolicy(_costs(1.0, FLAT))
    _sure(policy, False, hits=1, misses=3)
    assert policy.rate(False) < 0.8
    assert policy.length(False, 10) in DRAFT_LENGTHS
    assert policy.length(False, 10) > 0


def test_a_proposal_not_drafted_is_scored_as_the_tokens_come() -> None:
    policy = DraftPolicy(_costs(1.0, CPU))
    before = policy.rate(True)
    for _ in range(4):  # four proposals, each coming true to its end
        policy.watch(True, [5, 6, 7])
        for token in (5, 6, 7):
            assert policy.watching
            policy.see(token)
        assert not policy.watching
    assert policy.rate(True) > before
    policy.watch(True, [1, 2, 3])
    policy.see(1)
    policy.see(9)  # a miss ends it
    assert not policy.watching
    assert policy.rate(True) < 13 / 14
    policy.watch(False, [4])
    policy.forget_watched()
    assert not policy.watching
    assert policy.rate(False) == 0.5  # forgotten, not scored


def test_after_a_run_of_batches_one_token_is_decoded_alone_again() -> None:
    costs = _costs(1.0, CPU)
    policy = DraftPolicy(costs)
    _sure(policy, True, hits=9)
    costs.single(1.0)
    for _ in range(BatchCosts.REFRESH):
        assert policy.length(True, 10) == 10
        costs.batch(11, 8.19)
    assert policy.length(True, 10) == 0  # the single token's figure is old: measure it
    costs.single(1.0)
    assert policy.length(True, 10) == 10
    flat = BatchCosts(flat=True)
    for _ in range(BatchCosts.REFRESH * 2):
        flat.batch(11, 8.0)
    assert not flat.stale and flat.ratio(11) == 1.0  # LMDESK_LOOKUP=always


def test_the_best_case_is_the_cheapest_batch_per_token() -> None:
    assert best_case_speedup(CPU) == pytest.approx(11 / 8.19)  # here: at most 1.34x
    assert best_case_speedup(FLAT) == pytest.approx(11 / 1.15)
    assert best_case_speedup({}) == 1.0


def test_only_recent_outcomes_count() -> None:
    policy = DraftPolicy(_costs(1.0, CPU))
    _sure(policy, True, hits=0, misses=DraftPolicy.WINDOW)
    assert policy.rate(True) < 0.1
    _sure(policy, True, hits=DraftPolicy.WINDOW)
    assert policy.rate(True) > 0.99


# --- on the real model -------------------------------------------------------------------
# Two engines get the same requests in the same order, one with lookup and one without, so
# their KV caches hold the same history. They run on one thread with flash attention: there
# llama.cpp's logits for a token are bit for bit the same whether it is evaluated alone or in
# a batch (checked first), so the replies must be byte-identical, not just close. The engine
# with lookup drafts every proposal (LMDESK_LOOKUP=always): on this CPU most drafts would
# not pay and the policy would skip them, leaving little to check.


@pytest.fixture(scope="module")
def engines(smollm: Path) -> Iterator[tuple[LocalEngine, LocalEngine]]:
    params = LoadParams(model_path=str(smollm), n_ctx=2048, n_threads=1, n_threads_batch=1,
                        flash_attn=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LMDESK_LOOKUP", "always")
        with_lookup = LocalEngine(params)
        with_lookup.load()
    with with_lookup, LocalEngine(params) as plain:
        yield with_lookup, plain


def _pair(engines: tuple[LocalEngine, LocalEngine], messages: list[ChatMessage],
          sampling: SamplingParams) -> tuple[Done, Done]:
    on, off = engines
    a = list(on.generate(messages, replace(sampling, prompt_lookup=True)))[-1]
    b = list(off.generate(messages, replace(sampling, prompt_lookup=False)))[-1]
    assert isinstance(a, Done) and isinstance(b, Done)
    assert a.error is None and b.error is None, (a.error, b.error)
    assert b.stats.drafted_tokens == 0
    return a, b


def test_the_bench_measures_what_a_batch_costs_here(smollm: Path) -> None:
    ratios = batch_cost_ratios_apart(
        LoadParams(model_path=str(smollm), n_threads=1, flash_attn=True), context=200, reps=3)
    assert tuple(ratios) == COST_SIZES
    assert all(0.5 < ratio < 4 * n for n, ratio in ratios.items())
    assert ratios[11] > ratios[4] * 0.8  # more tokens are not much cheaper than fewer


def test_batches_give_the_logits_of_one_by_one_here(smollm: Path) -> None:
    from tui.engine.native import ContextOptions, NativeContext, NativeModel

    model = NativeModel(str(smollm), n_gpu_layers=0)
    ctx = NativeContext(model, ContextOptions(n_ctx=1024, n_batch=512, n_threads=1,
                                              n_threads_batch=1, flash_attn=True))
    try:
        tokens = model.tokenize(python_file(40), add_special=True, parse_special=False)
        assert len(tokens) > 300
        assert ctx.batch_matches_single(tokens[320:331], after=tokens[:320])
    finally:
        ctx.close()
        model.close()


def _drafted_by_own_engine(params: LoadParams) -> tuple[bool, int]:
    """(flash attention on, tokens drafted) for a rewrite on an engine loaded with
    ``params``."""
    engine = LocalEngine(params)
    try:
        info = engine.load()
        sampling = SamplingParams(temperature=0.0, max_tokens=40, seed=1)
        done = list(engine.generate(rewrite_messages(30), sampling))[-1]
        assert isinstance(done, Done) and done.error is None
        return info.flash_attn, done.stats.drafted_tokens
    finally:
        engine.unload()


def test_no_drafts_where_a_batch_would_round_differently(smollm: Path) -> None:
    # without flash attention llama.cpp's attention for a batch sums in another order than
    # for one token, so a draft could change the reply: the load-time probe turns lookup off
    assert _drafted_by_own_engine(LoadParams(
        model_path=str(smollm), n_ctx=1024, n_threads=1, n_threads_batch=1,
        flash_attn=False)) == (False, 0)


def test_no_drafts_on_several_threads(smollm: Path) -> None:
    # flash attention on (the default) but two threads: past a few hundred tokens a batch
    # rounds differently there, so lookup stays off
    assert _drafted_by_own_engine(LoadParams(
        model_path=str(smollm), n_ctx=1024, n_threads=2, n_threads_batch=2)) == (True, 0)


def test_one_generation_thread_drafts_whatever_the_prompts_threads(
        smollm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--threads 1` alone: the prompt still evaluates on two threads, the drafts are checked
    # on the one generation thread, and the reply is the one plain decoding gives
    monkeypatch.setenv("LMDESK_LOOKUP", "always")
    params = LoadParams(model_path=str(smollm), n_ctx=2048, n_threads=1, n_threads_batch=2)
    sampling = SamplingParams(temperature=0.0, max_tokens=120, seed=1, repeat_penalty=1.0)
    messages = rewrite_messages(30)
    with LocalEngine(params) as engine:
        plain = list(engine.generate(messages, replace(sampling, prompt_lookup=False)))[-1]
        drafted = list(engine.generate(messages, sampling))[-1]
        again = list(engine.generate(messages, replace(sampling, prompt_lookup=False)))[-1]
    assert isinstance(plain, Done) and isinstance(drafted, Done) and isinstance(again, Done)
    assert drafted.stats.accepted_tokens > 0
    assert drafted.text == plain.text == again.text


def test_a_rewrite_is_drafted_and_byte_identical(
        engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=160, seed=1)
    a, b = _pair(engines, rewrite_messages(30), sampling)
    print(f"drafted {a.stats.drafted_tokens}, accepted {a.stats.accepted_tokens}")
    assert a.text == b.text
    assert a.text.count("ledger") + a.text.count("journal") >= 3  # it did copy the file
    assert a.stats.generated_tokens == b.stats.generated_tokens
    assert a.stats.accepted_tokens > 0
    assert a.stats.drafted_tokens >= a.stats.accepted_tokens


def test_free_form_chat_is_byte_identical(engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=80, seed=1)
    a, b = _pair(engines, [ChatMessage("user", FREE_PROMPT)], sampling)
    assert a.text and a.text == b.text
    assert a.stats.generated_tokens == b.stats.generated_tokens


def test_a_stop_string_ends_both_at_the_same_place(
        engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=160, seed=1, stop=("merge",))
    a, b = _pair(engines, rewrite_messages(30), sampling)
    assert a.stats.stop_reason == b.stats.stop_reason == "stop"
    assert a.text == b.text and "merge" not in a.text and "ledger" in a.text


def test_sampling_at_a_temperature_draws_the_same_tokens(
        engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.9, max_tokens=120, seed=5)
    a, b = _pair(engines, rewrite_messages(30), sampling)
    assert a.text == b.text


def test_log_probabilities_come_from_each_tokens_own_position(
        engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=60, seed=1, top_logprobs=2)
    a, b = _pair(engines, rewrite_messages(30), sampling)
    assert a.stats.accepted_tokens > 0
    assert len(a.logprobs) == a.stats.generated_tokens
    assert a.logprobs == b.logprobs


def test_no_drafts_under_a_grammar(engines: tuple[LocalEngine, LocalEngine]) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=40, seed=1, json_schema="{}")
    a, b = _pair(engines, rewrite_messages(30), sampling)
    assert a.stats.drafted_tokens == 0
    assert a.text == b.text


def test_cancel_stops_a_drafting_reply(engines: tuple[LocalEngine, LocalEngine]) -> None:
    engine = engines[0]
    sampling = SamplingParams(temperature=0.0, max_tokens=1500, seed=1)
    texts: list[str] = []
    done: Done | None = None
    for event in engine.generate(rewrite_messages(30), sampling):
        if isinstance(event, Done):
            done = event
            break
        texts.append(getattr(event, "text", ""))
        if len(texts) == 20:
            threading.Thread(target=engine.cancel).start()
    assert done is not None and done.stats.stop_reason == "cancelled"
    assert done.text == "".join(texts)
    assert done.stats.generated_tokens < 1500
    again = list(engine.generate([ChatMessage("user", "Say hi.")],
                                 SamplingParams(temperature=0.0, max_tokens=8)))[-1]
    assert isinstance(again, Done) and again.error is None and again.text.strip()


def test_the_default_policy_gives_the_reply_of_plain_decoding(
        smollm: Path, engines: tuple[LocalEngine, LocalEngine]) -> None:
    # the engine as users get it (drafts only where they pay here, whatever that decides on
    # this machine) against plain decoding, on a copy that runs long
    params = LoadParams(model_path=str(smollm), n_ctx=2048, n_threads=1, n_threads_batch=1,
                        flash_attn=True)
    sampling = SamplingParams(temperature=0.0, max_tokens=200, seed=1, repeat_penalty=1.0)
    messages = rewrite_messages(30)
    with LocalEngine(params) as auto:
        a = list(auto.generate(messages, sampling))[-1]
    b = list(engines[1].generate(messages, replace(sampling, prompt_lookup=False)))[-1]
    assert isinstance(a, Done) and isinstance(b, Done) and a.error is None
    print(f"drafted {a.stats.drafted_tokens}, accepted {a.stats.accepted_tokens}")
    assert a.text == b.text
    assert a.text.count("ledger") + a.text.count("journal") >= 3  # it did copy the file
    assert a.stats.accepted_tokens <= a.stats.drafted_tokens
