"""Tool calling on the real default model through a real ``lmdesk serve`` process, with the
official ``openai`` client: a forced tool choice gives a call whose arguments validate against
the tool's schema (the engine constrains the decoding), streamed and not, and the n8n-style
sequence ends in an answer once the result is sent back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

SCHEMA: Any = {"type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"]}
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city", "parameters": SCHEMA}}
FORCED: Any = {"type": "function", "function": {"name": "get_weather"}}
QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def url(smollm: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "LMDESK_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "serve", "--port", "0", "--model", str(smollm),
         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("lmdesk serve: http://127.0.0.1:"), first
        yield first.split(": ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def model(smollm: Path) -> str:
    return smollm.stem  # the name lmdesk serve gives the --model file


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=180)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_forced_tool_choice_gives_a_schema_valid_call(client: openai.OpenAI, model: str,
                                                        seed: int) -> None:
    reply = client.chat.completions.create(
        model=model, messages=QUESTION, tools=[WEATHER], tool_choice=FORCED,
        seed=seed, temperature=0.8, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    jsonschema.validate(json.loads(calls[0].function.arguments), SCHEMA)  # type: ignore[union-attr]


def test_the_n8n_sequence_on_the_real_model_streamed_and_not(client: openai.OpenAI,
                                                             model: str) -> None:
    stream = client.chat.completions.create(
        model=model, messages=QUESTION, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=64, stream=True)
    ids, names, arguments, finish = [], [], "", None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or []:
                if piece.id:
                    ids.append(piece.id)
                    names.append(piece.function.name)  # type: ignore[union-attr]
                arguments += (piece.function.arguments or "") if piece.function else ""
    assert finish == "tool_calls" and names[:1] == ["get_weather"], (finish, names)
    assert len(ids) == 1
    jsonschema.validate(json.loads(arguments), SCHEMA)
    history = [*QUESTION,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": ids[0], "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": ids[0], "content": "18 degrees and sunny"}]
    final = client.chat.completions.create(model=model, messages=history,
                                           tools=[WEATHER], tool_choice="none", temperature=0,
                                           max_tokens=48)
    assert final.choices[0].finish_reason in ("stop", "length")
    assert (final.choices[0].message.content or "").strip()
    assert not final.choices[0].message.tool_calls
