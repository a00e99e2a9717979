"""One contract, three engines: the local worker (real SmolLM2), the remote engine against a
real ``lmdesk serve`` on loopback, and the scripted fake all pass the same assertions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.local import LocalEngine
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    ToolSpec,
)
from tui.engine.remote import RemoteEngine
from tui.engine.scripted import ScriptedEngine
from tui.serve import ApiServer, EnginePool

HI = [ChatMessage("user", "Name three colours.")]
GREEDY = SamplingParams(temperature=0.0, top_k=1, max_tokens=16, seed=1)


@pytest.fixture(scope="module")
def served(smollm_engine: LocalEngine) -> Iterator[ApiServer]:
    pool = EnginePool()
    pool.register("smollm2-135m", smollm_engine, default=True)
    api = ApiServer(pool, "127.0.0.1", 0).start()
    yield api
    api.stop()


@pytest.fixture(params=["local", "remote", "scripted"])
def engine(request: pytest.FixtureRequest, smollm_engine: LocalEngine) -> Engine:
    if request.param == "local":
        return smollm_engine
    if request.param == "remote":
        served: ApiServer = request.getfixturevalue("served")
        remote = RemoteEngine(served.url)
        remote.load()
        return remote
    scripted = ScriptedEngine(tokens=[f" word{i}" for i in range(3000)], delay_s=0.001)
    scripted.load()
    return scripted


def _events(engine: Engine, messages: list[ChatMessage] = HI,
            sampling: SamplingParams = GREEDY, **kwargs: Any) -> list[EngineEvent]:
    return list(engine.generate(messages, sampling, **kwargs))


def _check_stream(events: list[EngineEvent]) -> Done:
    """Deltas, then exactly one Done, last; the Done repeats what the deltas said."""
    assert events, "no events at all"
    dones = [e for e in events if isinstance(e, Done)]
    assert len(dones) == 1 and events[-1] is dones[0], [type(e).__name__ for e in events]
    done = dones[0]
    deltas = events[:-1]
    assert all(isinstance(e, TextDelta | ReasoningDelta) for e in deltas)
    assert done.text == "".join(e.text for e in deltas if isinstance(e, TextDelta))
    assert done.reasoning == "".join(e.text for e in deltas if isinstance(e, ReasoningDelta))
    return done


def test_a_reply_is_deltas_then_one_done_with_sane_stats(engine: Engine) -> None:
    assert isinstance(engine, Engine)
    assert engine.alive and engine.info is not None
    done = _check_stream(_events(engine))
    assert done.error is None
    assert done.text.strip()
    s = done.stats
    assert s.stop_reason in ("stop", "length")
    assert 0 < s.generated_tokens <= GREEDY.max_tokens
    assert s.reasoning_tokens == 0 and s.reasoning_seconds == 0.0
    assert s.prompt_tokens > 0
    assert s.reused_tokens + s.evaluated_prompt_tokens == s.prompt_tokens
    assert 0 <= s.time_to_first_token_s <= s.total_seconds
    assert s.generation_tokens_per_s > 0


def test_max_tokens_ends_with_length(engine: Engine) -> None:
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=4, seed=1)
    done = _check_stream(_events(engine, [ChatMessage("user", "Write a long essay.")],
                                 sampling))
    assert done.stats.stop_reason == "length"
    assert done.stats.generated_tokens == 4


def test_cancel_stops_the_reply_and_the_engine_goes_on(engine: Engine) -> None:
    sampling = SamplingParams(temperature=0.8, max_tokens=3000, seed=3)
    events: list[EngineEvent] = []
    for event in engine.generate([ChatMessage("user", "Tell me a very long story.")],
                                 sampling):
        events.append(event)
        if len(events) == 3:
            threading.Thread(target=engine.cancel).start()
    done = _check_stream(events)
    assert done.stats.stop_reason == "cancelled"
    assert done.error is None
    assert done.stats.generated_tokens < 3000
    assert engine.alive
    again = _check_stream(_events(engine))
    assert again.error is None and again.text.strip()


def test_count_tokens_of_text_and_of_a_chat(engine: Engine) -> None:
    text = engine.count_tokens("hello world, how are you today?")
    assert text > 0
    assert engine.count_tokens("hello world, how are you today?") == text
    chat = engine.count_tokens(messages=[ChatMessage("user", "hello world, how are you today?")])
    assert chat > text  # the chat template's markup counts too


def test_an_engine_that_cannot_call_tools_says_so(engine: Engine) -> None:
    """The session answers without tools when an engine raises EngineError for them."""
    with pytest.raises(EngineError, match="tool"):
        _events(engine, tools=[ToolSpec("clock", "the time")])
    assert engine.alive and _check_stream(_events(engine)).error is None


def test_a_scripted_tool_step_counts_its_prompt_like_a_reply() -> None:
    """The fake's stats keep the real engines' invariant on a tool step too: what is not
    reused was evaluated, and the prompt is counted the same way as for a reply."""
    from tui.engine.protocol import ToolCall

    scripted = ScriptedEngine("done", tool_steps=[[ToolCall("c1", "clock", "{}")]])
    scripted.load()
    step = _events(scripted, tools=[ToolSpec("clock", "the time")])[-1]
    assert isinstance(step, Done) and step.tool_calls
    s = step.stats
    assert s.prompt_tokens == scripted.count_tokens(messages=HI) > 0
    assert s.reused_tokens + s.evaluated_prompt_tokens == s.prompt_tokens
