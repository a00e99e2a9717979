"""Reasoning never leaks into an answer's content through ``lmdesk serve``: the real SmolLM2
with a chat template that opens a ``<think>`` block (as Qwen3's and DeepSeek-R1's do), read
with the official clients on chat completions (message and streamed deltas), the Responses
API (a reasoning item) and Anthropic's Messages (a thinking block)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tui.engine.protocol import LoadParams
from tui.serve import ApiServer, EnginePool

THINKING_TEMPLATE = (  # SmolLM2's ChatML, with a generation prompt that opens <think>
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)
QUESTION: Any = [{"role": "user", "content": "What is 2 + 2? Think it through."}]
BUDGET = 6
ASK: Any = {"model": "thinker", "messages": QUESTION, "temperature": 0, "max_tokens": 24,
            "seed": 1, "extra_body": {"reasoning_budget": BUDGET}}
MARKERS = ("<think>", "</think>")


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[ApiServer]:
    pool = EnginePool()
    pool.add_model("thinker", LoadParams(model_path=str(smollm), n_ctx=1024,
                                         chat_template=THINKING_TEMPLATE), default=True)
    api = ApiServer(pool, "127.0.0.1", 0).start()
    yield api
    api.stop()
    pool.close()


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)


def _clean(*texts: str) -> None:
    for text in texts:
        assert not any(marker in text for marker in MARKERS), text


def test_chat_completions_give_reasoning_apart(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(**ASK)
    message = reply.choices[0].message
    thought = (message.model_extra or {}).get("reasoning_content", "")
    assert thought.strip() and (message.content or "").strip()
    _clean(thought, message.content or "")
    assert thought.strip() not in (message.content or "")
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == BUDGET
    stream = client.chat.completions.create(**ASK, stream=True)
    content, reasoning, order = "", "", []
    for chunk in stream:
        for choice in chunk.choices:
            piece = (choice.delta.model_extra or {}).get("reasoning_content") or ""
            reasoning += piece
            content += choice.delta.content or ""
            if piece:
                order.append("r")
            elif choice.delta.content:
                order.append("c")
    assert content.strip() and reasoning.strip()
    _clean(content, reasoning)
    assert order.index("c") > len(order) - order[::-1].index("r") - 1  # reasoning first


def test_responses_and_messages_give_reasoning_apart(server: ApiServer,
                                                     client: openai.OpenAI) -> None:
    reply = client.responses.create(model="thinker", input=QUESTION[0]["content"],
                                    temperature=0, max_output_tokens=24,
                                    extra_body={"reasoning_budget": BUDGET, "seed": 1})
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    thought = reply.output[0].content[0].text  # type: ignore[union-attr,index]
    assert thought.strip() and reply.output_text.strip()
    _clean(thought, reply.output_text)
    claude = anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), api_key="x",
                                 max_retries=0, timeout=600)
    message = claude.messages.create(model="thinker", max_tokens=24, messages=QUESTION,
                                     extra_body={"top_k": 1},
                                     thinking={"type": "enabled", "budget_tokens": BUDGET})
    assert [block.type for block in message.content] == ["thinking", "text"]
    _clean(message.content[0].thinking, message.content[1].text)  # type: ignore[union-attr]
