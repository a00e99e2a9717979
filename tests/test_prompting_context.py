"""The context builder: exact budgets, chunked trimming, pinned messages, summaries, KV reuse."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tui.engine.protocol import ChatMessage, Done, EngineEvent, SamplingParams
from tui.engine.scripted import ScriptedEngine
from tui.prompting.context import (
    ContextError,
    ContextPlan,
    build_context,
    conversation_policy,
    set_conversation_policy,
    summarize_turns,
)
from tui.prompting.memory import HEADER, Memory
from tui.prompting.personas import Example, Persona
from tui.store import Store, StoredMessage

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima"]


def msg(mid: str, role: str, content: str, status: str = "done") -> StoredMessage:
    return StoredMessage(id=mid, role=role, content=content, created=0.0, status=status)


def chat(turns: int, words: int = 20, start: int = 0) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    for i in range(start, start + turns):
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))
        out += [msg(f"u{i}", "user", f"question {i}: {text}"),
                msg(f"a{i}", "assistant", f"answer {i}: {text}")]
    return out


PERSONA = Persona(id="p", name="P", system_prompt="You are P.", tone="formal",
                  examples=(Example("ping", "pong"),))
MEMORIES = [Memory("m1", "The user is Ana.", created=1.0),
            Memory("m2", "Ana likes tea.", created=2.0)]


def fits(engine: Any, plan: ContextPlan) -> None:
    exact = engine.count_tokens(messages=plan.messages)
    assert plan.tokens.prompt == exact
    assert plan.tokens.used <= plan.tokens.n_ctx


def test_everything_fits_in_a_fixed_order() -> None:
    engine = ScriptedEngine()
    history = [*chat(2), msg("x", "assistant", "failed", status="error"), msg("u9", "user", "go")]
    plan = build_context(engine, history=history, n_ctx=4096, reply_reserve=256,
                         system_prompt="Be brief.", persona=PERSONA, memories=MEMORIES)
    system = plan.messages[0]
    assert system.role == "system"
    assert system.content == ("You are P.\n\nWrite in a formal, courteous register.\n\n"
                              f"Be brief.\n\n{HEADER}\n- The user is Ana.\n- Ana likes tea.")
    assert plan.messages[1:3] == (ChatMessage("user", "ping"), ChatMessage("assistant", "pong"))
    assert [m.content.split(":")[0] for m in plan.messages[3:7]] == [
        "question 0", "answer 0", "question 1", "answer 1"]
    assert plan.messages[-1] == ChatMessage("user", "go")
    assert plan.left_out == () and "x" not in plan.kept_ids
    assert plan.memory_ids == ("m1", "m2")
    t = plan.tokens
    assert t.system > 0 and t.memory > 0 and t.examples > 0 and t.history > 0
    assert t.summary == 0 and t.reserve == 256
    fits(engine, plan)
    again = build_context(engine, history=history, n_ctx=4096, reply_reserve=256,
                          system_prompt="Be brief.", persona=PERSONA, memories=MEMORIES)
    assert again == plan


def test_drop_oldest_keeps_system_and_pinned_and_drops_in_chunks() -> None:
    engine = ScriptedEngine()
    n_ctx, reserve = 600, 100
    history: list[StoredMessage] = []
    plans: list[ContextPlan] = []
    for i in range(40):
        history += chat(1, start=i)[:1]
        plan = build_context(engine, history=history, n_ctx=n_ctx, reply_reserve=reserve,
                             system_prompt="Stay on topic.", pinned_ids={"u1"})
        fits(engine, plan)
        assert plan.messages[0] == ChatMessage("system", "Stay on topic.")
        assert i < 1 or "u1" in plan.kept_ids
        assert plan.messages[-1].content.startswith(f"question {i}")
        plans.append(plan)
        history += chat(1, start=i)[1:]
    cuts = [p.left_out for p in plans]
    assert cuts[-1], "the conversation should have outgrown the window"
    for before, after in itertools.pairwise(cuts):
        assert set(before) <= set(after)  # once out, a message stays out
    changes = [i for i in range(1, len(plans)) if plans[i].left_out != plans[i - 1].left_out]
    first_drop = changes[0]
    stable = [i for i in range(first_drop + 1, len(plans)) if i not in changes]
    # dropping one turn per new message would change the prefix every turn
    assert len(stable) >= len(changes) >= 5
    for i in stable:  # the previous prompt is a prefix of this one: the KV cache is reused
        prev = plans[i - 1].messages
        assert plans[i].messages[: len(prev)] == prev
    for i in changes[1:]:  # a cut frees a good share of the window at once (the first one
        # kept the pinned turn of its chunk)
        freed = plans[i - 1].tokens.history - plans[i].tokens.history
        assert freed >= n_ctx * 0.15
    assert any("earlier messages left out" in n for n in plans[-1].notes)


def test_message_larger_than_the_window_is_a_clear_error() -> None:
    engine = ScriptedEngine()
    history = [*chat(2), msg("big", "user", "word " * 900)]
    before = list(history)
    with pytest.raises(ContextError) as err:
        build_context(engine, history=history, n_ctx=512, reply_reserve=64)
    text = str(err.value)
    assert re.search(r"message big is 90\d tokens", text)
    assert "window holds 512" in text and "Nothing was changed" in text
    assert history == before


def test_pinned_messages_that_cannot_fit_are_an_error() -> None:
    engine = ScriptedEngine()
    history = chat(10, words=60)
    with pytest.raises(ContextError, match="unpin"):
        build_context(engine, history=history, n_ctx=300, reply_reserve=50,
                      pinned_ids={"u0", "u1", "u2", "u3"})


def test_policy_is_chosen_per_conversation(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as store:
        meta = store.create_conversation("c")
        assert conversation_policy(meta) == "drop_oldest"
        meta = set_conversation_policy(store, meta.id, "summarize")
        assert conversation_policy(meta) == "summarize"
        assert conversation_policy(set_conversation_policy(store, meta.id, "drop_oldest")) == (
            "drop_oldest")
        with pytest.raises(ContextError, match="unknown context policy"):
            set_conversation_policy(store, meta.id, "magic")  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    engine = ScriptedEngine()
    with pytest.raises(ContextError, match="reserve"):
        build_context(engine, history=chat(1), n_ctx=100, reply_reserve=100)
    with pytest.raises(ContextError, match="policy"):
        build_context(engine, history=chat(1), n_ctx=100, policy="random")  # type: ignore[arg-type]


def test_examples_then_memory_give_way_when_nothing_else_fits() -> None:
    engine = ScriptedEngine()
    persona = Persona(id="p", name="P", examples=(Example("q " * 100, "a " * 100),))
    plan = build_context(engine, history=[msg("u", "user", "hi " * 60)], n_ctx=200,
                         reply_reserve=40, persona=persona, memories=MEMORIES)
    assert "the examples were left out: they don't fit" in plan.notes
    assert plan.memory_ids == ("m1", "m2")
    fits(engine, plan)


def test_summarize_policy_caches_and_extends_the_summary() -> None:
    engine = ScriptedEngine("SUMMARY-TEXT")
    cache: dict[str, str] = {}
    history = chat(12)
    kwargs: dict[str, Any] = dict(n_ctx=600, reply_reserve=100, policy="summarize",
                                  summary_cache=cache, summary_tokens=40,
                                  system_prompt="Sys.")
    plan = build_context(engine, history=history, **kwargs)
    calls = len(engine.requests)
    assert calls >= 1 and plan.summary == "SUMMARY-TEXT" and plan.left_out
    assert plan.messages[0].content.startswith("Sys.\n\nSummary of the earlier part")
    assert plan.tokens.summary > 0
    assert any("summarised" in n for n in plan.notes)
    fits(engine, plan)
    first_prompt = engine.requests[0][1].content
    assert "question 0" in first_prompt and "Summary of what came before" not in first_prompt
    # the next turn, no new cut: nothing is summarised again
    history += chat(1, start=12)[:1]
    again = build_context(engine, history=history, **kwargs)
    assert len(engine.requests) == calls and again.summary_key == plan.summary_key
    # many turns later: only the newly dropped chunk is summarised, on top of the old summary
    history += chat(6, start=13)
    later = build_context(engine, history=history, **kwargs)
    assert len(later.left_out) > len(plan.left_out)
    new_calls = engine.requests[calls:]
    assert new_calls and all("Summary of what came before" in r[1].content for r in new_calls)
    assert all("question 0:" not in r[1].content for r in new_calls)


class Failing(ScriptedEngine):
    def generate(self, messages: Sequence[ChatMessage], sampling: SamplingParams, *,
                 raw_prompt: str | None = None) -> Iterator[EngineEvent]:
        for event in super().generate(messages, sampling):
            if isinstance(event, Done):
                yield Done(0, "", event.stats, "the worker died")


def test_a_failed_summary_falls_back_to_dropping() -> None:
    engine = Failing()
    plan = build_context(engine, history=chat(12), n_ctx=600, reply_reserve=100,
                         policy="summarize", summary_cache={})
    assert plan.summary is None and plan.left_out
    assert any("the worker died" in n and "left out instead" in n for n in plan.notes)


# --- with the real model ---------------------------------------------------------------------


def reply(engine: Any, messages: Sequence[ChatMessage], max_tokens: int = 12) -> Done:
    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=1)
    done = [e for e in engine.generate(messages, sampling) if isinstance(e, Done)]
    assert done and done[0].error is None
    return done[0]


@pytest.mark.model
def test_second_turn_reuses_the_kv_cache(smollm_engine: Any) -> None:
    kwargs: dict[str, Any] = dict(n_ctx=2048, reply_reserve=256, persona=PERSONA,
                                  memories=MEMORIES, system_prompt="Answer in one sentence.")
    history = [msg("u0", "user", "What colour is the sky?")]
    plan1 = build_context(smollm_engine, history=history, **kwargs)
    fits(smollm_engine, plan1)
    first = reply(smollm_engine, plan1.messages)
    history += [msg("a0", "assistant", first.text), msg("u1", "user", "And at night?")]
    plan2 = build_context(smollm_engine, history=history, **kwargs)
    fits(smollm_engine, plan2)
    assert plan2.messages[: len(plan1.messages)] == plan1.messages
    second = reply(smollm_engine, plan2.messages)
    t1 = plan1.tokens
    assert second.stats.reused_tokens >= t1.system + t1.memory + t1.examples + t1.history
    assert second.stats.reused_tokens >= first.stats.prompt_tokens
    assert second.stats.evaluated_prompt_tokens < plan2.tokens.prompt // 2


class Spy:
    """The real engine, counting generations."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.generations = engine, 0

    @property
    def info(self) -> Any:
        return self.engine.info

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        return int(self.engine.count_tokens(text=text, messages=messages))

    def generate(self, messages: Sequence[ChatMessage], sampling: SamplingParams, *,
                 raw_prompt: str | None = None) -> Iterator[EngineEvent]:
        self.generations += 1
        return self.engine.generate(messages, sampling)  # type: ignore[no-any-return]


@pytest.mark.model
def test_summarize_with_the_real_model(smollm_engine: Any) -> None:
    spy = Spy(smollm_engine)
    text = summarize_turns(spy, [ChatMessage("user", "I'm planning a trip to Peru in May."),
                                 ChatMessage("assistant", "May is dry season: good timing.")],
                           max_tokens=40)
    assert text.strip() and "\n" not in text and spy.generations == 1
    history = chat(8, words=25)
    cache: dict[str, str] = {}
    kwargs: dict[str, Any] = dict(n_ctx=700, reply_reserve=100, policy="summarize",
                                  summary_cache=cache, summary_tokens=40)
    plan = build_context(spy, history=history, **kwargs)
    assert plan.summary and plan.left_out and plan.tokens.summary > 0
    assert plan.summary in plan.messages[0].content
    fits(smollm_engine, plan)
    made = spy.generations
    history.append(msg("u99", "user", "thanks"))
    again = build_context(spy, history=history, **kwargs)
    assert spy.generations == made and again.summary == plan.summary
    fits(smollm_engine, again)


@pytest.mark.model
def test_drop_oldest_with_the_real_tokenizer_keeps_the_prefix(smollm_engine: Any) -> None:
    kwargs: dict[str, Any] = dict(n_ctx=700, reply_reserve=64, system_prompt="Be brief.",
                                  memories=MEMORIES, pinned_ids={"a1"})
    history = chat(10, words=25)
    plans: list[ContextPlan] = []
    dones: list[Done] = []
    for i in range(3):
        history.append(msg(f"q{i}", "user", f"Say {WORDS[i]}."))
        plan = build_context(smollm_engine, history=history, **kwargs)
        fits(smollm_engine, plan)
        assert plan.left_out and {"u1", "a1"} <= set(plan.kept_ids)  # a pinned reply keeps its turn
        assert plan.memory_ids == ("m1", "m2")
        plans.append(plan)
        dones.append(reply(smollm_engine, plan.messages, max_tokens=6))
        history.append(msg(f"r{i}", "assistant", dones[-1].text))
    same = [i for i in (1, 2) if plans[i].left_out == plans[i - 1].left_out]
    assert same, "each cut frees a quarter of the window: two cuts in a row cannot happen"
    i = same[0]
    assert plans[i].messages[: len(plans[i - 1].messages)] == plans[i - 1].messages
    assert dones[i].stats.reused_tokens >= dones[i - 1].stats.prompt_tokens
