"""Sampling fields on the real model: JSON schema and GBNF grammars, logit bias, log
probabilities, ignore_eos; and the schema keywords that cannot be enforced refused by name."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from tui.engine.errors import InvalidParameter
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, SamplingParams

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "editor", "viewer"]},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                 "maxItems": 3},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "address", "tags"],
    "additionalProperties": False,
}
ASK = [ChatMessage("user", "Describe a made-up user of a web site as JSON.")]


def _done(engine: LocalEngine, sampling: SamplingParams,
          messages: list[ChatMessage] = ASK) -> Done:
    done = list(engine.generate(messages, sampling))[-1]
    assert isinstance(done, Done)
    return done


@pytest.mark.timeout(1800)  # 20 replies: slow only on a machine shared with other jobs
def test_a_json_schema_gives_valid_json_on_20_seeds(smollm_engine: LocalEngine) -> None:
    schema = json.dumps(PERSON)
    for seed in range(20):
        sampling = SamplingParams(temperature=0.8, max_tokens=256, seed=seed,
                                  json_schema=schema)
        done = _done(smollm_engine, sampling)
        assert done.error is None, done.error
        assert done.stats.stop_reason == "stop", (seed, done.text)
        value = json.loads(done.text)
        jsonschema.validate(value, PERSON)


def test_any_json_object(smollm_engine: LocalEngine) -> None:
    done = _done(smollm_engine, SamplingParams(temperature=0.0, max_tokens=200, json_schema="{}"))
    assert done.error is None
    assert isinstance(json.loads(done.text), dict)


def test_a_gbnf_grammar_constrains_the_answer(smollm_engine: LocalEngine) -> None:
    grammar = 'root ::= ("yes" | "no") "." '
    for seed in range(3):
        done = _done(smollm_engine, SamplingParams(temperature=1.0, seed=seed, grammar=grammar),
                     [ChatMessage("user", "Is the sky green?")])
        assert done.text in ("yes.", "no.")


def test_a_grammar_that_does_not_parse_is_one_clear_line(smollm_engine: LocalEngine) -> None:
    done = _done(smollm_engine, SamplingParams(grammar="root ::= ( oops"))
    assert done.stats.stop_reason == "error"
    assert done.error is not None and "grammar" in done.error and "\n" not in done.error
    assert smollm_engine.alive
    assert _done(smollm_engine, SamplingParams(max_tokens=4)).error is None


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "integer", "minimum": 3}, ["minimum"]),
        ({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True,
                                                  "items": {"not": {"type": "null"}}}}},
         ["not", "uniqueItems"]),
        ({"type": "string", "format": "email"}, ["format: email"]),
    ],
)
def test_unsupported_schema_keywords_are_refused_by_name(
    smollm_engine: LocalEngine, schema: dict[str, object], named: list[str]
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        list(smollm_engine.generate(ASK, SamplingParams(json_schema=json.dumps(schema))))
    for name in named:
        assert name in str(caught.value)


def test_logit_bias_minus_100_bans_a_token(smollm_engine: LocalEngine) -> None:
    messages = [ChatMessage("user", "Count from 1 to 5, one number per line.")]
    free = _done(smollm_engine, SamplingParams(temperature=0.0, max_tokens=24, seed=1,
                                               top_logprobs=0), messages)
    texts = [lp.token for lp in free.logprobs]
    common = max(set(texts), key=texts.count)  # the token the reply uses most
    ids = smollm_engine.tokenize(common)
    assert len(ids) == 1 and texts.count(common) >= 2
    banned = _done(smollm_engine, SamplingParams(
        temperature=0.0, max_tokens=24, seed=1, top_logprobs=0,
        logit_bias=((ids[0], -100.0),)), messages)
    assert banned.error is None and banned.text
    assert common not in [lp.token for lp in banned.logprobs], banned.text


def test_logprobs_one_per_answer_token_with_alternatives(smollm_engine: LocalEngine) -> None:
    # no repeat penalty: the logprobs are the model's own, and a penalised pick can be another
    sampling = SamplingParams(temperature=0.0, max_tokens=12, seed=1, top_logprobs=3,
                              repeat_penalty=1.0)
    done = _done(smollm_engine, sampling, [ChatMessage("user", "Say hello.")])
    assert done.error is None
    assert len(done.logprobs) == done.stats.generated_tokens
    assert "".join(lp.token for lp in done.logprobs) == done.text
    for lp in done.logprobs:
        assert lp.logprob <= 0.0 and math.isfinite(lp.logprob)
        assert len(lp.top) == 3
        assert [p for _, p in lp.top] == sorted((p for _, p in lp.top), reverse=True)
        # greedy: the chosen token is the most likely one
        assert lp.top[0][0] == lp.token and abs(lp.top[0][1] - lp.logprob) < 1e-6
    none = _done(smollm_engine, SamplingParams(temperature=0.0, max_tokens=4, seed=1))
    assert none.logprobs == ()


def test_logprobs_for_a_plain_completion(smollm_engine: LocalEngine) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=6, seed=1, top_logprobs=2)
    done = list(smollm_engine.generate([], sampling, raw_prompt="The capital of France is"))[-1]
    assert isinstance(done, Done) and done.error is None, done.error
    assert len(done.logprobs) == done.stats.generated_tokens == 6
    assert "".join(lp.token for lp in done.logprobs) == done.text


def test_ignore_eos_runs_to_max_tokens(smollm_engine: LocalEngine) -> None:
    messages = [ChatMessage("user", "Reply with the single word: yes")]
    natural = _done(smollm_engine, SamplingParams(temperature=0.0, max_tokens=60, seed=1),
                    messages)
    assert natural.stats.stop_reason == "stop" and natural.stats.generated_tokens < 60
    forced = _done(smollm_engine, SamplingParams(temperature=0.0, max_tokens=60, seed=1,
                                                 ignore_eos=True), messages)
    assert forced.stats.stop_reason == "length"
    assert forced.stats.generated_tokens == 60


def test_the_remote_engine_sends_the_fields_and_reads_logprobs() -> None:
    from tests.test_remote_engine import MODELS, _sse, fake
    from tui.engine.remote import RemoteEngine

    piece = {"choices": [{"index": 0, "delta": {"content": "{}"}, "finish_reason": "stop",
                          "logprobs": {"content": [{"token": "{}", "logprob": -0.25,
                                                    "top_logprobs": [{"token": "{}",
                                                                      "logprob": -0.25}]}]}}]}
    routes = {"GET /v1/models": MODELS,
              "POST /v1/chat/completions": lambda h, b: _sse(h, [piece])}
    sampling = SamplingParams(presence_penalty=0.5, frequency_penalty=-0.5,
                              logit_bias=((42, -100.0),), top_logprobs=1,
                              json_schema=json.dumps({"type": "object"}), ignore_eos=True,
                              reasoning_budget=0)
    with fake(routes) as (url, seen):
        done = list(RemoteEngine(url).generate(ASK, sampling))[-1]
    body = seen[-1]
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == -0.5
    assert body["logit_bias"] == {"42": -100.0}
    assert body["logprobs"] is True and body["top_logprobs"] == 1
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body["ignore_eos"] is True
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert isinstance(done, Done) and done.text == "{}"
    assert done.logprobs[0].token == "{}" and done.logprobs[0].logprob == -0.25
    assert done.logprobs[0].top == (("{}", -0.25),)
