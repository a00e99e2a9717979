"""The low-level generation loop: the same tokens as llama-cpp-python's high-level loop,
cancel during a long prompt, and deltas gathered only when tokens come fast."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.engine import delivery
from tui.engine.delivery import DeltaSender, StopMatcher
from tui.engine.local import LocalEngine, resolve_load_params
from tui.engine.protocol import (
    ChatMessage,
    Done,
    LoadParams,
    SamplingParams,
    TextDelta,
    WorkerEvent,
)
from tui.engine.reference import Reference

CASES = [
    ("Name three colours.", SamplingParams(temperature=0.0, top_k=1, max_tokens=40, seed=1)),
    ("What is the capital of France?", SamplingParams(temperature=0.0, max_tokens=40, seed=1)),
    ("Count from 1 to 10, one number per line.",
     SamplingParams(temperature=0.0, max_tokens=60, seed=1, stop=("4",))),
    ("Write a haiku.", SamplingParams(temperature=0.0, max_tokens=40, seed=1, stop=("\n\n", "."))),
    ("Tell me a story.", SamplingParams(temperature=0.9, max_tokens=40, seed=11,
                                        presence_penalty=0.5, frequency_penalty=0.3)),
]


@pytest.fixture(scope="module")
def params(smollm: Path) -> LoadParams:
    return resolve_load_params(LoadParams(model_path=str(smollm), n_ctx=1024))


@pytest.fixture(scope="module")
def fresh_engine(params: LoadParams) -> Iterator[LocalEngine]:
    engine = LocalEngine(params)
    engine.load()
    yield engine
    engine.unload()


@pytest.mark.timeout(1200)  # ten replies and a process start: slow only on a shared machine
def test_the_new_loop_gives_the_old_loops_tokens(
    params: LoadParams, fresh_engine: LocalEngine
) -> None:
    with Reference(params, "old") as old:
        for prompt, sampling in CASES:
            messages = [ChatMessage("user", prompt)]
            done = list(fresh_engine.generate(messages, sampling))[-1]
            assert isinstance(done, Done) and done.error is None
            ref = old.run(messages, sampling)
            assert done.text == ref.text, (prompt, done.text, ref.text)
            assert done.text
            if not sampling.stop:
                assert done.stats.generated_tokens == ref.generated_tokens, prompt


def test_the_native_reference_is_the_same_loop(params: LoadParams) -> None:
    prompt, sampling = CASES[0]
    with Reference(params, "native") as native, Reference(params, "old") as old:
        a = native.run([ChatMessage("user", prompt)], sampling)
        b = old.run([ChatMessage("user", prompt)], sampling)
    assert a.text == b.text and a.generated_tokens == b.generated_tokens


def test_cancel_during_a_long_prompt_stops_it_and_keeps_what_was_evaluated(
    fresh_engine: LocalEngine,
) -> None:
    words = " ".join(f"w{i}" for i in range(200))  # about 800 tokens: seconds to evaluate
    messages = [ChatMessage("user", words)]
    asked: list[float] = []

    def cancel_soon() -> None:
        time.sleep(0.3)
        asked.append(time.perf_counter())
        fresh_engine.cancel()

    threading.Thread(target=cancel_soon).start()
    events = list(fresh_engine.generate(messages, SamplingParams(max_tokens=8, seed=1)))
    ended = time.perf_counter()
    done = events[-1]
    assert isinstance(done, Done) and asked
    assert done.stats.stop_reason == "cancelled" and done.error is None
    assert done.stats.generated_tokens == 0 and done.text == ""
    print(f"cancel during the prompt took {(ended - asked[0]) * 1000:.0f} ms")
    assert ended - asked[0] < 2.0  # generous on a shared machine; bench prints the figure
    # what was evaluated before the cancel stays in the cache: the retry starts from there
    again = list(fresh_engine.generate(messages, SamplingParams(max_tokens=8, seed=1)))[-1]
    assert isinstance(again, Done) and again.error is None
    assert again.stats.reused_tokens > 0
    assert again.stats.reused_tokens + again.stats.evaluated_prompt_tokens == (
        again.stats.prompt_tokens)


def test_deltas_are_sent_at_once_when_slow_and_gathered_when_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(delivery.time, "perf_counter", lambda: clock[0])
    sent: list[WorkerEvent] = []
    sender = DeltaSender(sent.append, 7)
    sender.add("answer", "a", 1)  # the first token goes out at once
    assert len(sent) == 1
    fast = "bcdefghijklmnopqrstu"
    for text in fast:  # 1 ms apart: gathered, for at most DeltaSender.HOLD_S
        clock[0] += 0.001
        sender.add("answer", text, 1)
    assert 1 < len(sent) <= 1 + len(fast) * 0.001 / DeltaSender.HOLD_S + 1
    clock[0] += 0.05  # a slow token: sent at once with what was held
    sender.add("answer", "v", 1)
    assert sender.pending == []
    texts = [e for e in sent if isinstance(e, TextDelta)]
    assert "".join(e.text for e in texts) == "a" + fast + "v"
    assert sum(e.n_tokens for e in texts) == 2 + len(fast)


def test_stop_strings_hold_back_only_what_could_start_one() -> None:
    matcher = StopMatcher(["END", "\n\n"])
    assert matcher.feed("Hello E") == ("Hello ", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("x") == ("ENx", False)
    assert matcher.feed(" more\n") == (" more", False)
    assert matcher.feed("\nafter") == ("", True)


def test_a_caller_that_draws_less_often_gets_deltas_gathered_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``gather_s`` (the app asks for 50 ms): tokens 15 ms apart go out three or four at a
    time, the first at once; a slow model's tokens still go out one by one."""
    clock = [100.0]
    monkeypatch.setattr(delivery.time, "perf_counter", lambda: clock[0])
    sent: list[WorkerEvent] = []
    sender = DeltaSender(sent.append, 7, gather_s=0.05)
    for n in range(40):
        clock[0] += 0.015
        sender.add("answer", f"t{n} ", 1)
    sender.flush()
    texts = [e for e in sent if isinstance(e, TextDelta)]
    assert "".join(e.text for e in texts) == "".join(f"t{n} " for n in range(40))
    assert texts[0].n_tokens == 1
    assert len(texts) <= 1 + 40 // 3 + 1
    slow: list[WorkerEvent] = []
    sender = DeltaSender(slow.append, 8, gather_s=0.05)
    for n in range(5):
        clock[0] += 0.2  # 5 tokens/s: each shown as it comes
        sender.add("answer", f"s{n}", 1)
    assert len(slow) == 5
