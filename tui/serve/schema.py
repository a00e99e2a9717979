"""What every API dialect shares: errors, reading a request body, the generation request.

A body is read through ``Body``: the fields an endpoint understands are read and checked (a
bad value is a 400 naming the field in ``param``); every other field is accepted and ignored,
and named back to the client in the ``x-lmdesk-ignored`` header. Integration tools send what
their authors' favourite server takes and cannot be changed, so the server takes it.

The dialects (``openai_api``, ``anthropic_api``, ``responses_api``) turn a body into a
``GenerationRequest`` here and shape the answer as a ``Reply``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from tui.engine.errors import InvalidParameter
from tui.engine.protocol import (
    ChatMessage,
    Done,
    Role,
    SamplingParams,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from tui.i18n import _


class ApiError(Exception):
    """An error answer; ``body()`` is OpenAI's shape ``{"error": {message, type, param, code}}``
    (the Anthropic endpoint renders the same fields in its own)."""

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


# --- reading a body --------------------------------------------------------------------------


def find_lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate (JSON's ``"\\ud800"``):
    text that cannot be encoded, which must be refused before it reaches a tokenizer."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body"
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and find_lone_surrogate(key) is not None:
                    return where or "body"
                stack.append((item, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
    return None


class Body:
    """One JSON object of a request, read field by field.

    Every ``get`` (or typed read) marks a field as understood; ``ignored()`` names the rest.
    ``prefix`` names nested objects in errors and in the ignored list (``stream_options.x``).
    """

    def __init__(self, obj: dict[str, Any], prefix: str = "") -> None:
        self.obj = obj
        self.prefix = prefix
        self._read: set[str] = set()
        self._nested: list[Body] = []

    def param(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def get(self, key: str) -> Any:
        self._read.add(key)
        return self.obj.get(key)

    def child(self, key: str) -> Body | None:
        """A nested object (None when absent or null); its unknown fields are named too."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad(_("{key} must be an object", key=self.param(key)), self.param(key))
        nested = Body(value, self.param(key))
        self._nested.append(nested)
        return nested

    def include(self, nested: Body) -> None:
        """Name ``nested``'s unread fields with this body's (an item of a list field)."""
        self._nested.append(nested)

    def ignored(self) -> list[str]:
        own = [self.param(k) for k, v in self.obj.items()
               if k not in self._read and v is not None]
        for nested in self._nested:
            own += nested.ignored()
        return own

    def number(self, key: str, *, low: float | None = None, high: float | None = None
               ) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)):
            raise bad(_("{name} must be a number, got {value}", name=self.param(key),
                        value=_short(value)), self.param(key))
        if (low is not None and value < low) or (high is not None and value > high):
            raise bad(_("{name} must be between {low:g} and {high:g}, got {value}",
                        name=self.param(key), low=low, high=high, value=value),
                      self.param(key))
        return float(value)

    def integer(self, key: str, *, low: int | None = None, high: int | None = None
                ) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(_("{name} must be a whole number, got {value}", name=self.param(key),
                        value=_short(value)), self.param(key))
        if low is not None and value < low:
            raise bad(_("{name} must be at least {minimum}, got {value}", name=self.param(key),
                        minimum=low, value=value), self.param(key))
        if high is not None and value > high:
            raise bad(_("{name} must be at most {maximum}, got {value}", name=self.param(key),
                        maximum=high, value=value), self.param(key))
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise bad(_("{name} must be true or false, got {value}", name=self.param(key),
                        value=_short(value)), self.param(key))
        return value

    def string(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad(_("{name} must be a string, got {value}", name=self.param(key),
                        value=_short(value)), self.param(key))
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str | None:
        value = self.string(key)
        if value is not None and value not in options:
            raise bad(_("{name} must be one of {options}, got {value!r}", name=self.param(key),
                        options=", ".join(options), value=value), self.param(key))
        return value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the request -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """One engine run of a request (a request with ``n`` = 3 has three)."""

    messages: tuple[ChatMessage, ...]
    raw_prompt: str | None
    sampling: SamplingParams
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"


@dataclass(frozen=True)
class GenerationRequest:
    kind: str
    """"chat", "completion", "messages" (Anthropic) or "responses"."""
    model: str | None
    generations: tuple[Generation, ...]
    stream: bool
    include_usage: bool = False
    max_tokens_clamped: bool = False
    ignored: tuple[str, ...] = ()
    """Fields accepted without a meaning here (``x-lmdesk-ignored``)."""
    logprobs: bool = False
    """Return each token's log-probability (``sampling.top_logprobs`` alternatives)."""
    echo: bool = False
    """A completion's ``echo``: its prompt is put before the answer."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What a dialect echoes back in its answer (the Responses API repeats its request)."""
    parallel_tool_calls: bool = True
    """False: at most one tool call per reply (the first the model makes)."""

    @property
    def sampling(self) -> SamplingParams:
        return self.generations[0].sampling


MAX_CHOICES = 8
"""At most this many replies per request (``n``, or completions' list of prompts)."""

ROLES: dict[str, Role] = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant"
}
"""OpenAI's message roles (chat completions and Responses) as the engine's."""
EFFORT_BUDGETS = {"none": 0, "minimal": 128, "low": 512, "medium": 2048, "high": -1}
"""``reasoning_effort`` as a reasoning budget in tokens (-1: no limit)."""

_SAMPLING_PARAMS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "seed": "seed", "logit_bias": "logit_bias",
    "top_logprobs": "top_logprobs", "json_schema": "response_format", "grammar": "grammar",
    "reasoning_budget": "reasoning_budget", "stop": "stop", "max_tokens": "max_tokens",
}


def sampling_values(body: Body) -> dict[str, Any]:
    """The sampling fields OpenAI, llama-server and Ollama clients send, as SamplingParams
    values (only those given)."""
    values: dict[str, Any] = {}
    for key in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty"):
        number = body.number(key)
        if number is not None:
            values[key] = number
    for key in ("repeat_penalty", "repetition_penalty"):
        number = body.number(key)
        if number is not None:
            values["repeat_penalty"] = number
    top_k = body.integer("top_k")
    if top_k is not None:
        values["top_k"] = max(top_k, 0)  # llama-server's "-1: off" is our 0
    seed = body.integer("seed")
    if seed is not None:
        values["seed"] = seed if seed >= 0 else None  # -1: a random seed, as llama-server
    if body.has("logit_bias"):
        values["logit_bias"] = logit_bias(body.get("logit_bias"), body.param("logit_bias"))
    ignore_eos = body.boolean("ignore_eos")
    if ignore_eos is not None:
        values["ignore_eos"] = ignore_eos
    grammar = body.string("grammar")
    if grammar:
        values["grammar"] = grammar
    return values


def logit_bias(value: Any, param: str) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``{"token id": bias}`` (ids as strings, as JSON keys must be) as pairs; a
    list of ``[id, bias]`` pairs (llama-server) is taken too."""
    if value is None:
        return ()
    items: list[tuple[Any, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        items = [(p[0], p[1]) for p in value]
    else:
        raise bad(_("{param} must map token ids to biases, e.g. {{\"50256\": -100}}",
                    param=param), param)
    if len(items) > 1024:
        raise bad(_("{param} holds {count} tokens; at most 1024", param=param,
                    count=len(items)), param)
    pairs: list[tuple[int, float]] = []
    for token, bias in items:
        try:
            token_id = int(token) if not isinstance(token, bool) else -1
        except (TypeError, ValueError):
            token_id = -1
        if token_id < 0:
            raise bad(_("{param}: {token} is not a token id (a whole number)", param=param,
                        token=_short(token)), param)
        if bias is False:  # llama-server: false bans the token
            bias = -100
        if (isinstance(bias, bool) or not isinstance(bias, int | float)
                or not math.isfinite(bias) or not -100 <= bias <= 100):
            raise bad(_("{param}: the bias of token {token_id} must be a number from -100 to "
                        "100", param=param, token_id=token_id), param)
        pairs.append((token_id, float(bias)))
    return tuple(sorted(pairs))


def stop_strings(value: Any, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(s, str) for s in value):
        raise bad(_("{param} must be a string or a list of at most 16 strings", param=param),
                  param)
    return tuple(s for s in value if s)


def reasoning_budget(body: Body) -> int | None:
    """The reasoning budget a chat request asks for: ``reasoning_budget`` (tokens, -1: no
    limit), ``reasoning_effort`` (none..high), or ``chat_template_kwargs.enable_thinking``
    false (0, as Qwen3's templates take it). None: the server's default."""
    budget = body.integer("reasoning_budget", low=-1)
    effort = body.choice("reasoning_effort", tuple(EFFORT_BUDGETS))
    kwargs = body.child("chat_template_kwargs")
    enable = kwargs.boolean("enable_thinking") if kwargs is not None else None
    if budget is not None:
        return budget
    if enable is False:
        return 0
    if effort is not None:
        return EFFORT_BUDGETS[effort]
    return None


def json_format(kind: str | None, schema: Any, param: str) -> str | None:
    """A ``json_object`` / ``json_schema`` output format as SamplingParams.json_schema."""
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "{}"
    if kind == "json_schema":
        if isinstance(schema, bool) or not isinstance(schema, dict):
            raise bad(_("{param} must be a JSON schema (an object)", param=param), param)
        return json.dumps(schema, ensure_ascii=False)
    raise bad(_("the output format type must be text, json_object or json_schema, got "
                "{kind!r}", kind=kind), param)


def max_tokens(asked: int | None, key: str, default: int, limit: int) -> tuple[int, bool]:
    """The reply's token bound, clamped to the server's limit, and whether it was clamped."""
    if asked is not None and asked < 1:
        raise bad(_("{name} must be at least {minimum}, got {value}", name=key, minimum=1,
                    value=asked), key)
    return min(asked or default, limit), asked is not None and asked > limit


def ignored_names(body: Body) -> tuple[str, ...]:
    """``body.ignored()`` with list indices folded (``messages[].name`` once, not per item)."""
    seen: dict[str, None] = {}
    for name in body.ignored():
        seen[re.sub(r"\[\d+\]", "[]", name)] = None
    return tuple(seen)


def make_sampling(values: dict[str, Any], params: dict[str, str] | None = None
                  ) -> SamplingParams:
    """SamplingParams from ``values``, checked; a bad value is a 400 naming the request's
    field (``params`` maps a sampling field to its name in this dialect)."""
    names = {**_SAMPLING_PARAMS, **(params or {})}
    try:
        sampling = SamplingParams(**values)
        sampling.validate()
    except InvalidParameter as exc:
        message = str(exc)
        first = message.split(" ", 1)[0]
        param = names.get(first, first)
        if "schema" in message:
            param = names["json_schema"]
        raise bad(message, param, "invalid_value") from None
    return sampling


def seeded(sampling: SamplingParams, index: int) -> SamplingParams:
    """The sampling of a request's ``index``-th reply: its own seed (seed + index) when a seed
    was given, else the load seed's stream goes on (each reply differs)."""
    if index == 0 or sampling.seed is None:
        return sampling
    return dataclasses.replace(sampling, seed=sampling.seed + index)


def text_content(content: Any, where: str, part_types: tuple[str, ...] = ("text",)) -> str:
    """A message's content: a string, or a list of text parts (their ``text`` joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in part_types:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(_("{where}[{i}]: only text content is supported (got {kind!r}); "
                            "this server runs text models", where=where, i=i, kind=kind), where)
            if not isinstance(part.get("text"), str):
                raise bad(_("{where}[{i}]: a text part needs a string 'text'", where=where,
                            i=i), where)
            parts.append(part["text"])
        return "".join(parts)
    raise bad(_("{where} must be a string or a list of text parts", where=where), where)


# --- shaping the answer ----------------------------------------------------------------------


Frame = tuple[str | None, Any]
"""One server-sent event: its ``event:`` name (None: none) and its data (JSON, or a string
sent as it is, like OpenAI's ``[DONE]``)."""


class Reply(Protocol):
    """One request's answer in an API's shape, fed as the engine streams."""

    def opening(self) -> list[Frame]:
        """The events before the first piece (the stream opens lazily, at the first piece, so
        a prompt that does not fit can still be a plain 400)."""

    def reasoning(self, index: int, text: str) -> list[Frame]: ...

    def text(self, index: int, text: str) -> list[Frame]: ...

    def tool_call(self, index: int, delta: ToolCallDelta) -> list[Frame]:
        """A piece of a tool call: the first of a call carries its id and name."""

    def choice_done(self, index: int, done: Done) -> list[Frame]:
        """One reply of the request finished (the request's ``n`` replies come in turn)."""

    def closing(self, dones: list[Done]) -> list[Frame]:
        """The last events; the last reply may have failed (``stop_reason`` "error")."""

    def answer(self, dones: list[Done]) -> dict[str, Any]:
        """The whole answer, not streamed (all replies succeeded)."""


def frames_bytes(frames: list[Frame]) -> bytes:
    out = []
    for name, data in frames:
        payload = data if isinstance(data, str) else json.dumps(
            data, ensure_ascii=False, separators=(",", ":"))
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {payload}\n\n")
    return "".join(out).encode("utf-8")

