"""Conversation KV states kept across restarts: the store on its own, then the real model
(restored gives the same next tokens as cold; stale is never used; damaged is discarded)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tui.engine.kv_state import MIN_TOKENS, DamagedState, StateStore
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

IDENTITY = {"model": ["/m.gguf", 1, 2], "n_ctx": 2048}


def _tokens(n: int, start: int = 1) -> list[int]:
    return list(range(start, start + n))


def test_a_state_round_trips_privately_and_the_longest_shared_prefix_wins(
        tmp_path: Path) -> None:
    store = StateStore(tmp_path / "kv", IDENTITY, 10**9)
    short, long = _tokens(MIN_TOKENS + 10), _tokens(MIN_TOKENS + 400)
    store.save(short, b"short-state", wait=True)
    store.save(long, b"long-state", wait=True)
    assert stat.S_IMODE(os.stat(tmp_path / "kv").st_mode) == 0o700
    files = sorted(store.folder.glob("*.kv"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    prompt = [*long[:MIN_TOKENS + 300], 99999]
    found = store.best(prompt, at_least=0)
    assert found is not None and found[1] == MIN_TOKENS + 300
    assert store.load(found[0]) == b"long-state"
    # a prompt that shares less than the cache already holds, or too little, finds nothing
    assert store.best(prompt, at_least=MIN_TOKENS + 300) is None
    assert store.best(_tokens(MIN_TOKENS + 50, start=7), at_least=0) is None


def test_another_identity_never_sees_the_states(tmp_path: Path) -> None:
    StateStore(tmp_path, IDENTITY, 10**9).save(_tokens(MIN_TOKENS + 5), b"x", wait=True)
    other = StateStore(tmp_path, {**IDENTITY, "n_ctx": 4096}, 10**9)
    assert other.candidates() == []
    assert other.best(_tokens(MIN_TOKENS + 5), at_least=0) is None


def test_a_damaged_state_is_refused_and_deleted(tmp_path: Path) -> None:
    store = StateStore(tmp_path, IDENTITY, 10**9)
    tokens = _tokens(MIN_TOKENS + 5)
    store.save(tokens, b"payload-bytes" * 100, wait=True)
    [path] = store.folder.glob("*.kv")
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF
    path.write_bytes(bytes(data))
    [state] = store.candidates()
    with pytest.raises(DamagedState, match="checksum"):
        store.load(state)
    assert not path.exists()
    path.write_bytes(b"not a state at all")
    assert store.candidates() == []


def test_the_least_recently_used_go_first_beyond_the_budget(tmp_path: Path) -> None:
    store = StateStore(tmp_path, IDENTITY, 10**9)
    for i in range(3):
        tokens = _tokens(MIN_TOKENS, start=1000 * i)
        store.save(tokens, bytes(900), wait=True)
        found = store.best(tokens, 0)
        assert found is not None
        os.utime(found[0].path, (i, i))  # distinct ages: 0, 1, 2
    size = max(s.size for s in store.candidates())
    store.budget = 2 * size + 10
    store.evict()
    assert sorted(s.tokens[0] for s in store.candidates()) == [1000, 2000]
    assert store.disk_bytes() <= store.budget


# --- the real model ---------------------------------------------------------------------------


def _conversation(topic: str = "lighthouses") -> list[ChatMessage]:
    turns = [ChatMessage("system", f"You are a patient teacher of {topic}.")]
    for i in range(6):
        turns.append(ChatMessage("user", f"Question {i}: tell me one more fact about {topic}, "
                                         "with a date, a place and a person, in two sentences."))
        turns.append(ChatMessage("assistant", f"Fact {i}: the first {topic} of the coast were "
                                              "built of stone in 1820 near a harbour, and a "
                                              "keeper named Anna wrote about storms there."))
    turns.append(ChatMessage("user", "Now summarise everything in one sentence."))
    return turns


GREEDY = SamplingParams(temperature=0.0, top_k=1, max_tokens=16, seed=1)


def _reply(engine: LocalEngine, messages: list[ChatMessage]) -> Done:
    done = list(engine.generate(messages, GREEDY))[-1]
    assert isinstance(done, Done) and done.error is None, done
    return done


def _engine(smollm: Path, kv: Path | None, n_ctx: int = 2048) -> LocalEngine:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=n_ctx,
                                    kv_state_dir=str(kv) if kv else None))
    engine.load()
    return engine


@pytest.mark.timeout(900)
def test_a_reopened_conversation_is_restored_and_replies_as_cold(
        smollm: Path, tmp_path: Path) -> None:
    kv = tmp_path / "kv-states"
    messages = _conversation()
    first = _engine(smollm, kv)
    try:
        cold = _reply(first, messages)
        assert cold.stats.reused_tokens == 0 and cold.stats.prompt_tokens > MIN_TOKENS
    finally:
        first.unload()  # leaving the conversation saves it
    [saved] = list(kv.glob("*/*.kv"))
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    again = _engine(smollm, kv)
    try:
        restored = _reply(again, messages)
        # the whole prompt but its last token came from disk, and the reply is the same
        assert restored.stats.reused_tokens == restored.stats.prompt_tokens - 1
        assert restored.text == cold.text
        assert restored.stats.generated_tokens == cold.stats.generated_tokens
        # a changed prefix (another system message) never uses it
        other = _reply(again, _conversation("windmills"))
        assert other.stats.reused_tokens < 16
        assert not other.notes
    finally:
        again.unload()

    # other parameters (another context size) are another identity: never used
    stale = _engine(smollm, kv, n_ctx=1024)
    try:
        assert _reply(stale, messages).stats.reused_tokens == 0
    finally:
        stale.unload()


@pytest.mark.timeout(900)
def test_a_damaged_state_is_discarded_with_a_note(smollm: Path, tmp_path: Path) -> None:
    kv = tmp_path / "kv-states"
    messages = _conversation()
    first = _engine(smollm, kv)
    try:
        cold = _reply(first, messages)
    finally:
        first.unload()
    [saved] = list(kv.glob("*/*.kv"))
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))

    again = _engine(smollm, kv)
    try:
        done = _reply(again, messages)
        assert done.stats.reused_tokens == 0
        assert done.text == cold.text
        assert any("discarded" in note for note in done.notes), done.notes
        assert not saved.exists()
        assert again.alive
    finally:
        again.unload()


def test_the_session_passes_engine_notes_on(tmp_path: Path) -> None:
    """A note on the Done (a discarded state) reaches the turn's notes."""
    import threading

    from tui.engine.scripted import ScriptedEngine
    from tui.session.choice import ResolvedModel
    from tui.session.model_session import ModelSession
    from tui.session.request import for_prompt
    from tui.session.turn import run_turn
    from tui.store import LocalModel

    class Noting(ScriptedEngine):
        def generate(self, *args: Any, **kwargs: Any) -> Any:
            for event in super().generate(*args, **kwargs):
                if isinstance(event, Done):
                    event = Done(event.request_id, event.text, event.stats,
                                 notes=("a saved state was discarded",))
                yield event

    engine = Noting("Hi.")
    session = ModelSession(lambda _p: engine)
    session.adopt(ResolvedModel(LocalModel("x.gguf", "x"), "x.gguf", "x"), engine,
                  engine.load())

    class Sink:
        def planned(self, *a: Any) -> None: ...
        def reasoning(self, *a: Any) -> None: ...
        def text(self, *a: Any) -> None: ...
        def tool_call(self, *a: Any) -> None: ...

    outcome = run_turn(session, for_prompt("hello", SamplingParams(max_tokens=5)), Sink(),
                       threading.Event())
    assert outcome.notes == ["a saved state was discarded"]
