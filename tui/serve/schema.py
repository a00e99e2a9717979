"""The OpenAI wire format: strict parsing of request bodies and the JSON of the answers.

Parsing refuses what it does not understand (an unknown field, a wrong type, a feature lmdesk
does not offer) with an ``ApiError`` naming the field, rather than silently ignoring it. Fields
that only have a meaning lmdesk cannot honour are accepted at their neutral value (``n: 1``,
``presence_penalty: 0``...) because many tools always send them.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from tui.engine.errors import InvalidParameter
from tui.engine.protocol import ChatMessage, Done, GenerationStats, Role, SamplingParams


class ApiError(Exception):
    """An answer in OpenAI's error shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class GenerationRequest:
    kind: str
    """"chat" or "completion"."""
    model: str | None
    messages: tuple[ChatMessage, ...]
    raw_prompt: str | None
    sampling: SamplingParams
    stream: bool
    include_usage: bool
    max_tokens_clamped: bool


_SAMPLING = {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repetition_penalty"}
_COMMON = {"model", "stream", "stream_options", "max_tokens", "seed", "stop", "user", "n"}
_NEUTRAL: dict[str, tuple[object, ...]] = {
    "n": (1,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logprobs": (False, 0),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "parallel_tool_calls": (False, True),
}
CHAT_FIELDS = frozenset(
    _SAMPLING | _COMMON | {"messages", "max_completion_tokens", "presence_penalty",
                           "frequency_penalty", "logprobs", "parallel_tool_calls"}
)
COMPLETION_FIELDS = frozenset(
    _SAMPLING | _COMMON | {"prompt", "presence_penalty", "frequency_penalty", "logprobs",
                           "echo", "best_of", "suffix"}
)
_ROLES: dict[str, Role] = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant"
}


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{key} must be a number, got {value!r}", key)
    return float(value)


def _integer(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{key} must be a whole number, got {value!r}", key)
    return value


def _text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad(f"{where}: only text content parts are supported", where)
            if not isinstance(part.get("text"), str):
                raise bad(f"{where}: a text part needs a string 'text'", where)
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"{where} must be a string or a list of text parts", where)


def _messages(value: object) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list", "messages")
    out = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object with role and content", where)
        extra = set(item) - {"role", "content", "name"}
        if extra:
            raise bad(f"{where}: unsupported field {sorted(extra)[0]!r}", f"{where}.{min(extra)}")
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise bad(
                f"{where}.role must be system, developer, user or assistant, "
                f"got {item.get('role')!r}",
                f"{where}.role",
            )
        out.append(ChatMessage(role, _text(item.get("content"), f"{where}.content")))
    return tuple(out)


def _prompt(value: object) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise bad("prompt must be a string (one prompt per request)", "prompt")
    if not value:
        raise bad("prompt is empty", "prompt")
    return value


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(s, str) for s in value):
        raise bad("stop must be a string or a list of at most 16 strings", "stop")
    return tuple(s for s in value if s)


def parse_generation(
    kind: str, body: dict[str, Any], *, default_max_tokens: int, max_tokens_limit: int
) -> GenerationRequest:
    """Validate a chat or completion request body; raise ``ApiError`` (400) on any problem."""
    allowed = CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}", unknown[0], "unknown_field")
    for key, neutral in _NEUTRAL.items():
        if body.get(key) is not None and body[key] not in neutral:
            raise bad(f"{key}={body[key]!r} is not supported by lmdesk", key, "unsupported")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("model must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise bad("stream_options may only hold include_usage", "stream_options")
    if kind == "chat":
        messages, raw = _messages(body.get("messages")), None
    else:
        messages, raw = (), _prompt(body.get("prompt"))
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    asked = _integer(body, key)
    if asked is not None and asked < 1:
        raise bad(f"{key} must be at least 1, got {asked}", key)
    max_tokens = min(asked or default_max_tokens, max_tokens_limit)
    values: dict[str, Any] = {"max_tokens": max_tokens, "stop": _stop(body.get("stop"))}
    for name in ("temperature", "top_p", "min_p", "repeat_penalty", "repetition_penalty"):
        number = _number(body, name)
        if number is not None:
            values["repeat_penalty" if name == "repetition_penalty" else name] = number
    top_k = _integer(body, "top_k")
    if top_k is not None:
        values["top_k"] = max(top_k, 0)  # llama-server's "-1: off" is our 0
    seed = _integer(body, "seed")
    values["seed"] = seed if seed is not None and seed >= 0 else None
    sampling = SamplingParams(**values)
    try:
        sampling.validate()
    except InvalidParameter as exc:
        raise bad(str(exc), str(exc).split(" ", 1)[0]) from None
    return GenerationRequest(
        kind=kind,
        model=model,
        messages=messages,
        raw_prompt=raw,
        sampling=sampling,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens_clamped=asked is not None and asked > max_tokens_limit,
    )


# --- answers ---------------------------------------------------------------------------------

FINISH = {"stop": "stop", "length": "length", "cancelled": "stop", "error": "stop"}


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)


def usage(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.reused_tokens},
    }


def timings(stats: GenerationStats) -> dict[str, Any]:
    """llama-server's ``timings`` object (milliseconds), plus ``ttft`` (ms) and the stop."""
    prompt_n = stats.evaluated_prompt_tokens
    prompt_ms = prompt_n / stats.prompt_tokens_per_s * 1000 if stats.prompt_tokens_per_s else 0.0
    predicted_n = stats.generated_tokens
    rate = stats.generation_tokens_per_s
    predicted_ms = predicted_n / rate * 1000 if rate else 0.0
    return {
        "cache_n": stats.reused_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": round(prompt_ms, 3),
        "prompt_per_token_ms": round(prompt_ms / prompt_n, 3) if prompt_n else 0.0,
        "prompt_per_second": round(stats.prompt_tokens_per_s, 3),
        "predicted_n": predicted_n,
        "predicted_ms": round(predicted_ms, 3),
        "predicted_per_token_ms": round(predicted_ms / predicted_n, 3) if predicted_n else 0.0,
        "predicted_per_second": round(rate, 3),
        "ttft": round(stats.time_to_first_token_s * 1000, 3),
        "stop_reason": stats.stop_reason,
    }


def _choice(kind: str, text: str | None, finish: str | None, *, stream: bool) -> dict[str, Any]:
    if kind == "completion":
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    if stream:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    message = {"role": "assistant", "content": text or ""}
    return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}


def _object(kind: str, stream: bool) -> str:
    if kind == "completion":
        return "text_completion"
    return "chat.completion.chunk" if stream else "chat.completion"


def full_answer(kind: str, rid: str, model: str, done: Done) -> dict[str, Any]:
    finish = FINISH[done.stats.stop_reason]
    return {
        "id": rid,
        "object": _object(kind, False),
        "created": int(time.time()),
        "model": model,
        "choices": [_choice(kind, done.text, finish, stream=False)],
        "usage": usage(done.stats),
        "timings": timings(done.stats),
    }


def chunk(
    kind: str,
    rid: str,
    model: str,
    text: str | None,
    *,
    role: bool = False,
    done: Done | None = None,
) -> dict[str, Any]:
    """One streamed event: a piece of text, the opening role, or the closing one with stats."""
    finish = FINISH[done.stats.stop_reason] if done is not None else None
    choice = _choice(kind, text, finish, stream=True)
    if role and kind == "chat":
        choice["delta"] = {"role": "assistant", "content": ""}
    out: dict[str, Any] = {
        "id": rid,
        "object": _object(kind, True),
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if done is not None:
        out["usage"] = usage(done.stats)
        out["timings"] = timings(done.stats)
    return out


def usage_chunk(kind: str, rid: str, model: str, done: Done) -> dict[str, Any]:
    """The extra last event ``stream_options.include_usage`` asks for: no choices, the usage."""
    return {
        "id": rid,
        "object": _object(kind, True),
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(done.stats),
        "timings": timings(done.stats),
    }
