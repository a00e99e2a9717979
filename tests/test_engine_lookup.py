"""Prompt lookup: its proposer and gate (pure Python over token ids), then the loop's drafts
on the real model, whose replies must be the very replies of plain decoding."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tui.engine.bench_lookup import FREE_PROMPT, python_file, rewrite_messages
from tui.engine.local import LocalEngine
from tui.engine.lookup import AcceptanceGate, PromptLookup
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
    # with only one token of the tail matching, the latest occurrence of it counts
    short = PromptLookup([2, 3, 4, 4, 3, 8, 0, 5, 3], max_draft=1)
    assert short.propose() == [8]


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


def test_bad_ngram_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        PromptLookup(min_ngram=0)
    with pytest.raises(ValueError):
        PromptLookup(min_ngram=3, max_ngram=2)


def test_the_gate_pauses_when_drafts_are_mostly_rejected_longer_each_time() -> None:
    gate = AcceptanceGate(window=4, threshold=0.3, pause=3)
    for _ in range(3):
        gate.record(8, 0)
    assert gate.open  # not judged before a full window
    gate.record(8, 0)
    assert not gate.open
    for _ in range(3):
        gate.tick()
    assert gate.open  # paused for 3 tokens
    for _ in range(4):
        gate.record(8, 1)
    assert not gate.open
    for _ in range(5):
        gate.tick()
    assert not gate.open  # the second pause is twice as long
    gate.tick()
    assert gate.open
    assert (gate.drafted, gate.accepted) == (64, 4)


def test_the_gate_stays_open_while_drafts_pay() -> None:
    gate = AcceptanceGate(window=4, threshold=0.3)
    for _ in range(20):
        gate.record(8, 3)  # 37% accepted
    assert gate.open
    gate.record(8, 0)
    gate.record(8, 0)
    assert not gate.open  # the last four: 6 of 32


def test_drafts_grow_while_accepted_and_shrink_after_a_miss() -> None:
    gate = AcceptanceGate(max_draft=10, first_draft=4)
    assert gate.length == 4
    gate.record(4, 4)
    assert gate.length == 8
    gate.record(8, 8)
    assert gate.length == 10
    gate.record(10, 2)
    assert gate.length == 3
    gate.record(3, 0)
    assert gate.length == 1


# --- on the real model -------------------------------------------------------------------
# Two engines get the same requests in the same order, one with lookup and one without, so
# their KV caches hold the same history. They run on one thread with flash attention: there
# llama.cpp's logits for a token are bit for bit the same whether it is evaluated alone or in
# a batch (checked first), so the replies must be byte-identical, not just close.


@pytest.fixture(scope="module")
def engines(smollm: Path) -> Iterator[tuple[LocalEngine, LocalEngine]]:
    params = LoadParams(model_path=str(smollm), n_ctx=2048, n_threads=1, n_threads_batch=1,
                        flash_attn=True)
    with LocalEngine(params) as with_lookup, LocalEngine(params) as plain:
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
