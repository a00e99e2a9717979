"""Reasoning apart from the answer: the streaming splitter on recorded streams of each family
(markers split across deltas included), the budget on the real model, reasoning history only
for templates that read it, and remote servers' ``reasoning_content``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_remote_engine import MODELS, _sse, fake
from tui.engine.local import LocalEngine
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    LoadParams,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
)
from tui.engine.reasoning import (
    HARMONY,
    THINK,
    ReasoningFormat,
    ReasoningSplitter,
    format_for_template,
    opens_reasoning,
    split_whole,
)
from tui.engine.remote import RemoteEngine

# --- the splitter on recorded streams --------------------------------------------------------

QWEN3 = "<think>\nThe user wants 2+2. That is 4.\n</think>\n\nIt is **4**."
R1_OPENED = "Okay, 2+2 is 4. Let me check: yes.\n</think>\n\nThe answer is 4."
GPT_OSS = ("<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.")
MAGISTRAL = "[THINK]Add the numbers: 4.[/THINK]The sum is 4."
PLAIN = "Here is <think> in the middle, and </think> too."
HTML = "<b>bold</b> answer"

RECORDED = [
    (QWEN3, THINK, False, "The user wants 2+2. That is 4.", "It is **4**."),
    (R1_OPENED, THINK, True, "Okay, 2+2 is 4. Let me check: yes.", "The answer is 4."),
    (GPT_OSS, HARMONY, False, "User asks 2+2. Simple.", "2 + 2 = 4."),
    (MAGISTRAL, format_for_template("{{ '[THINK]' }}"), False, "Add the numbers: 4.",
     "The sum is 4."),
    (PLAIN, THINK, False, "", PLAIN),
    (HTML, THINK, False, "", HTML),
    ("<think>cut off mid-thought", THINK, False, "cut off mid-thought", ""),
    ("", THINK, False, "", ""),
]


def _chunkings(text: str) -> Iterator[list[str]]:
    yield [text]
    yield list(text)  # one character at a time: every marker split every way
    for cut in range(1, len(text)):
        yield [text[:cut], text[cut:]]
    rng = random.Random(5)
    for _ in range(20):
        pieces, at = [], 0
        while at < len(text):
            step = rng.randint(1, 6)
            pieces.append(text[at:at + step])
            at += step
        yield pieces


@pytest.mark.parametrize(("stream", "fmt", "inside", "reasoning", "answer"), RECORDED)
def test_the_splitter_gives_the_same_parts_however_the_stream_is_cut(
    stream: str, fmt: ReasoningFormat, inside: bool, reasoning: str, answer: str
) -> None:
    for pieces in _chunkings(stream):
        splitter = ReasoningSplitter(fmt, started_inside=inside)
        parts = [p for piece in pieces for p in splitter.feed(piece)] + splitter.close()
        got_reasoning = "".join(t for part, t in parts if part == "reasoning")
        got_answer = "".join(t for part, t in parts if part == "answer")
        assert (got_reasoning, got_answer) == (reasoning, answer), pieces
        # parts come in order: no reasoning after the answer has begun
        kinds = [part for part, _ in parts]
        if "answer" in kinds:
            assert "reasoning" not in kinds[kinds.index("answer"):]


def test_the_format_comes_from_the_template() -> None:
    assert format_for_template(None) is THINK
    assert format_for_template("...<|channel|>analysis...") is HARMONY
    assert format_for_template("{{ '<think>' }}").close == "</think>"
    assert format_for_template("{{ '[THINK]' }}").close == "[/THINK]"
    assert format_for_template("<seed:think>").close == "</seed:think>"
    assert opens_reasoning(THINK, "<|im_start|>assistant\n<think>\n")
    assert not opens_reasoning(THINK, "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert split_whole(QWEN3) == ("The user wants 2+2. That is 4.", "It is **4**.")


# --- the real model with a template that opens <think> ----------------------------------------

SMOL_THINKING = (  # SmolLM2's ChatML, with a generation prompt that opens <think> (as Qwen3's)
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)
SMOL_SWITCHABLE = (  # reads enable_thinking, as Qwen3's does
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}"
)
SMOL_WITH_REASONING_HISTORY = (  # renders an assistant turn's reasoning_content
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message.reasoning_content %}{{ '<think>' + message.reasoning_content + "
    "'</think>' }}{% endif %}{{ message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QUESTION = [ChatMessage("user", "What is 2 + 2? Think it through.")]


def _engine(smollm: Path, template: str) -> LocalEngine:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=1024, chat_template=template))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def thinking(smollm: Path) -> Iterator[LocalEngine]:
    engine = _engine(smollm, SMOL_THINKING)
    yield engine
    engine.unload()


def _run(engine: LocalEngine, sampling: SamplingParams) -> tuple[list[EngineEvent], Done]:
    events = list(engine.generate(QUESTION, sampling))
    done = events[-1]
    assert isinstance(done, Done) and done.error is None, done
    assert done.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert done.reasoning == "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return events, done


def test_the_budget_closes_the_block_and_an_answer_follows(thinking: LocalEngine) -> None:
    assert thinking.info is not None and thinking.info.chat_template == SMOL_THINKING
    sampling = SamplingParams(temperature=0.0, max_tokens=80, seed=1, reasoning_budget=5)
    events, done = _run(thinking, sampling)
    assert done.reasoning.strip() and done.text.strip()
    assert done.stats.reasoning_tokens == 5
    assert done.stats.generated_tokens > 5
    assert 0 < done.stats.reasoning_seconds <= done.stats.total_seconds
    kinds = [type(e) for e in events[:-1]]
    assert kinds.index(TextDelta) > max(i for i, k in enumerate(kinds) if k is ReasoningDelta)
    for marker in ("<think>", "</think>"):
        assert marker not in done.text and marker not in done.reasoning
    assert done.reasoning.strip() not in done.text


def test_unlimited_reasoning_never_reaches_the_answer(thinking: LocalEngine) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=24, seed=1, reasoning_budget=-1,
                              ignore_eos=True)
    _, done = _run(thinking, sampling)
    assert done.stats.stop_reason == "length"
    assert done.text == "" and done.reasoning.strip()
    assert done.stats.reasoning_tokens == 24


def test_budget_zero_closes_the_block_at_once(thinking: LocalEngine) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=24, seed=1, reasoning_budget=0)
    _, done = _run(thinking, sampling)
    assert done.reasoning == "" and done.stats.reasoning_tokens == 0
    assert done.text.strip()


def test_budget_zero_asks_a_template_that_can_not_to_think(smollm: Path) -> None:
    engine = _engine(smollm, SMOL_SWITCHABLE)
    try:
        off = engine.tokenize(messages=QUESTION)  # rendered as a reply would be, budget -1
        sampling = SamplingParams(temperature=0.0, max_tokens=24, seed=1, reasoning_budget=0)
        _, done = _run(engine, sampling)
        assert done.reasoning == "" and done.text.strip()
        assert done.stats.prompt_tokens > len(off)  # the template's empty <think></think>
    finally:
        engine.unload()


def test_reasoning_history_only_for_templates_that_read_it(
    smollm_engine: LocalEngine, smollm: Path
) -> None:
    history = [ChatMessage("user", "hi"),
               ChatMessage("assistant", "Hello!", reasoning="The user greets me."),
               ChatMessage("user", "How are you?")]
    bare = [*history[:1], ChatMessage("assistant", "Hello!"), history[2]]
    # SmolLM2's own template does not mention it: the prompt (and the KV prefix) is unchanged
    assert smollm_engine.tokenize(messages=history) == smollm_engine.tokenize(messages=bare)
    engine = _engine(smollm, SMOL_WITH_REASONING_HISTORY)
    try:
        with_it = engine.tokenize(messages=history)
        assert len(with_it) > len(engine.tokenize(messages=bare))
        assert _contains(with_it, engine.tokenize("The user greets me."))
    finally:
        engine.unload()


def _contains(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


# --- remote servers --------------------------------------------------------------------------


def _delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_remote_reads_the_servers_reasoning_field(field: str) -> None:
    events = [_delta(**{field: "Two plus "}), _delta(**{field: "two."}),
              _delta(content="It is "), _delta(content="4.")]
    routes = {"GET /v1/models": MODELS,
              "POST /v1/chat/completions": lambda h, b: _sse(h, events)}
    with fake(routes) as (url, _):
        got = list(RemoteEngine(url).generate(QUESTION, SamplingParams()))
    done = got[-1]
    assert isinstance(done, Done)
    assert [type(e) for e in got[:-1]] == [ReasoningDelta, ReasoningDelta, TextDelta, TextDelta]
    assert done.reasoning == "Two plus two." and done.text == "It is 4."
    assert done.stats.reasoning_tokens == 2


def test_remote_splits_think_inside_content() -> None:
    pieces = ["<thi", "nk>Two plus", " two.</th", "ink>\n\nIt is", " 4."]
    routes = {"GET /v1/models": MODELS,
              "POST /v1/chat/completions": lambda h, b: _sse(h, [_delta(content=p)
                                                                 for p in pieces])}
    with fake(routes) as (url, _):
        got = list(RemoteEngine(url).generate(QUESTION, SamplingParams()))
    done = got[-1]
    assert isinstance(done, Done)
    assert done.reasoning == "Two plus two." and done.text == "It is 4."
    assert done.text == "".join(e.text for e in got if isinstance(e, TextDelta))
