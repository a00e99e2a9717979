"""OpenAI's chat completions and completions: request bodies in, answers and chunks out.

Beside OpenAI's own fields this takes the llama.cpp extras clients send (``top_k``, ``min_p``,
``repeat_penalty``, ``ignore_eos``, ``grammar``, ``json_schema``, ``reasoning_budget``,
``chat_template_kwargs.enable_thinking``). A thinking model's reasoning is returned as
``message.reasoning_content`` (``delta.reasoning_content`` when streaming), never inside
``content``. Log-probabilities of a streamed reply come in each choice's last chunk.

Tool calling as OpenAI's: ``tools`` (function tools), ``tool_choice``, ``parallel_tool_calls``
in; ``message.tool_calls`` (``delta.tool_calls`` pieces when streaming) and ``finish_reason:
"tool_calls"`` out; assistant messages with ``tool_calls`` and ``tool`` messages in the
history. The client runs the tools.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tui.engine.protocol import (
    ChatMessage,
    Done,
    GenerationStats,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from tui.i18n import _
from tui.serve.schema import (
    MAX_CHOICES,
    ROLES,
    Body,
    Frame,
    Generation,
    GenerationRequest,
    bad,
    error_body,
    ignored_names,
    json_format,
    make_sampling,
    max_tokens,
    reasoning_budget,
    sampling_values,
    seeded,
    stop_strings,
    text_content,
)
from tui.serve.tool_calls import (
    CHOICES,
    arguments_text,
    check_choice,
    check_tools,
    name_results,
    tool_bodies,
    tool_spec,
)

FINISH = {"stop": "stop", "length": "length", "cancelled": "stop", "error": "error",
          "tool_calls": "tool_calls"}


def chat_tools(body: Body) -> tuple[tuple[ToolSpec, ...], str, bool]:
    """The tools a chat request offers (``tools`` of type function), its ``tool_choice`` and
    ``parallel_tool_calls``."""
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise bad(_("functions / function_call are OpenAI's deprecated form: send tools and "
                    "tool_choice"), "functions", "unsupported")
    specs: list[ToolSpec] = []
    for where, tool in tool_bodies(body, _("function tools")):
        kind = tool.get("type") or "function"
        if kind != "function":
            raise bad(_("{where}.type {kind!r} is not offered here: only function tools",
                        where=where, kind=kind), f"{where}.type", "unsupported")
        fn = tool.child("function")
        if fn is None:
            raise bad(_("{where}.function is missing", where=where), f"{where}.function")
        fn.get("strict")
        specs.append(tool_spec(fn.get("name"), fn.get("description"), fn.get("parameters"),
                               f"{where}.function"))
    tools = check_tools(specs, "tools")
    choice = _choice(body.get("tool_choice"))
    parallel = body.boolean("parallel_tool_calls")
    return tools, check_choice(choice, tools, "tool_choice"), parallel is not False


def _choice(value: Any) -> str:
    """``tool_choice``: "auto", "none", "required" or ``{"type": "function", "function":
    {"name": ...}}`` (the name as the engine's ToolChoice)."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in CHOICES:
            raise bad(_("tool_choice must be one of {choices} or a function, got {value!r}",
                        choices=", ".join(CHOICES), value=value), "tool_choice")
        return value
    fn = value.get("function") if isinstance(value, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise bad(_("tool_choice must name a function: {example}",
                    example='{"type": "function", "function": {"name": "..."}}'), "tool_choice")
    return name


def _calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (OpenAI's shape)."""
    if not isinstance(value, list):
        raise bad(_("{where} must be a list of tool calls", where=where), where)
    calls = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        fn = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad(_("{at} needs a function with a name", at=at), at)
        call_id = raw.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise bad(_("{at}.id must be a non-empty string", at=at), f"{at}.id")
        calls.append(ToolCall(call_id, fn["name"],
                              arguments_text(fn.get("arguments"), f"{at}.function.arguments")))
    return tuple(calls)


def chat_messages(body: Body, key: str = "messages") -> tuple[ChatMessage, ...]:
    """The conversation of a chat request (its items' unknown fields named in ``body``):
    assistant messages may carry ``tool_calls``, ``tool`` messages answer them."""
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise bad(_("messages must be a non-empty list"), "messages")
    out: list[ChatMessage] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise bad(_("{where} must be an object with role and content", where=where), where)
        msg = Body(item, where)
        body.include(msg)
        given = msg.get("role")
        if given == "tool":
            call_id = msg.string("tool_call_id")
            if not call_id:
                raise bad(_("{where}: a tool message needs the tool_call_id it answers",
                            where=where), f"{where}.tool_call_id")
            content = text_content(msg.get("content"), f"{where}.content")
            out.append(ChatMessage("tool", content, tool_call_id=call_id,
                                   name=msg.string("name")))
            continue
        if given == "function":
            raise bad(_("{where}: role function is OpenAI's deprecated form: send tool "
                        "messages", where=where), f"{where}.role", "unsupported")
        role = ROLES.get(str(given))
        if role is None:
            raise bad(_("{where}.role must be system, developer, user, assistant or tool, "
                        "got {given!r}", where=where, given=given), f"{where}.role")
        calls: tuple[ToolCall, ...] = ()
        if msg.has("tool_calls"):
            if role != "assistant":
                raise bad(_("{where}: only an assistant message carries tool_calls",
                            where=where), f"{where}.tool_calls")
            calls = _calls(msg.get("tool_calls"), f"{where}.tool_calls")
        content = text_content(msg.get("content"), f"{where}.content")
        reasoning = ""
        if role == "assistant":
            reasoning = msg.string("reasoning_content") or msg.string("reasoning") or ""
        msg.get("refusal")
        out.append(ChatMessage(role, content, reasoning=reasoning, tool_calls=calls))
    return name_results(out, key)


def _prompts(value: Any) -> list[str]:
    prompts = value if isinstance(value, list) else [value]
    if not prompts:
        raise bad(_("prompt is empty"), "prompt")
    if len(prompts) > MAX_CHOICES:
        raise bad(_("prompt holds {count} prompts; at most {MAX_CHOICES}", count=len(prompts),
                    MAX_CHOICES=MAX_CHOICES), "prompt")
    for p in prompts:
        if isinstance(p, int | list):
            raise bad(_("prompt must be text: token-id prompts are not accepted"), "prompt")
        if not isinstance(p, str):
            raise bad(_("prompt must be a string or a list of strings"), "prompt")
        if not p:
            raise bad(_("prompt is empty"), "prompt")
    return prompts


def parse(kind: str, obj: dict[str, Any], *, default_max_tokens: int, max_tokens_limit: int
          ) -> GenerationRequest:
    """A chat ("chat") or completion ("completion") request; ``ApiError`` (400) when bad."""
    body = Body(obj)
    model = body.string("model")
    stream = body.boolean("stream") or False
    options = body.child("stream_options")
    include_usage = bool(options.boolean("include_usage")) if options is not None else False
    key = "max_completion_tokens" if body.has("max_completion_tokens") else "max_tokens"
    body.get("max_tokens")
    limit, clamped = max_tokens(body.integer(key), key, default_max_tokens, max_tokens_limit)
    n = body.integer("n", low=1, high=MAX_CHOICES) or 1
    values = sampling_values(body)
    values["max_tokens"] = limit
    values["stop"] = stop_strings(body.get("stop"), "stop")
    tools: tuple[ToolSpec, ...] = ()
    choice = "auto"
    parallel = True
    want_logprobs = False
    echo = False
    if kind == "chat":
        tools, choice, parallel = chat_tools(body)
        messages = chat_messages(body)
        prompts: list[str | None] = [None]
        want_logprobs = bool(body.boolean("logprobs"))
        top = body.integer("top_logprobs", low=0, high=20)
        if top is not None and not want_logprobs:
            raise bad(_("top_logprobs needs logprobs: true"), "top_logprobs")
        if want_logprobs:
            values["top_logprobs"] = top or 0
    else:
        messages = ()
        prompts = list(_prompts(body.get("prompt")))
        top = body.integer("logprobs", low=0, high=20)
        if top is not None:
            want_logprobs = True
            values["top_logprobs"] = top
        echo = bool(body.boolean("echo"))
        best_of = body.integer("best_of", low=1)
        if best_of is not None and best_of != 1:
            raise bad(_("best_of other than 1 is not supported: use n"), "best_of",
                      "unsupported")
        if body.string("suffix"):
            raise bad(_("suffix (text insertion) is not supported"), "suffix", "unsupported")
        if len(prompts) * n > MAX_CHOICES:
            raise bad(_("{count} prompts times n={n} is more than {MAX_CHOICES} replies",
                        count=len(prompts), n=n, MAX_CHOICES=MAX_CHOICES), "n")
    fmt = body.child("response_format")
    if fmt is not None:
        kind_of = fmt.string("type")
        schema = None
        if kind_of == "json_schema":
            spec = fmt.child("json_schema")
            if spec is None:
                raise bad(_("response_format.json_schema is missing"), "response_format")
            schema = spec.get("schema")
            spec.get("name")
            spec.get("strict")
            spec.get("description")
        elif kind_of == "json_object":
            schema = fmt.get("schema")  # llama-server's json_object may carry a schema
            if schema is not None:
                kind_of = "json_schema"
        values["json_schema"] = json_format(kind_of, schema, "response_format")
    if body.has("json_schema"):  # llama-server's own field
        values["json_schema"] = json_format("json_schema", body.get("json_schema"), "json_schema")
    budget = reasoning_budget(body)
    if budget is not None:
        values["reasoning_budget"] = budget
    sampling = make_sampling({k: v for k, v in values.items() if v is not None},
                             {"max_tokens": key})
    generations: list[Generation] = []
    for prompt in prompts:
        for _reply in range(n):
            generations.append(Generation(messages, prompt,
                                          seeded(sampling, len(generations)), tools, choice))
    return GenerationRequest(
        kind=kind, model=model, generations=tuple(generations), stream=stream,
        include_usage=include_usage, max_tokens_clamped=clamped,
        ignored=ignored_names(body), logprobs=want_logprobs, echo=echo,
        parallel_tool_calls=parallel,
    )


# --- answers ---------------------------------------------------------------------------------


def usage(dones: list[Done]) -> dict[str, Any]:
    """Token counts of a request's replies (the prompt counted once, as OpenAI bills it)."""
    prompt = dones[0].stats.prompt_tokens if dones else 0
    completion = sum(d.stats.generated_tokens for d in dones)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": dones[0].stats.reused_tokens if dones else 0},
    }
    out["completion_tokens_details"] = {
        "reasoning_tokens": sum(d.stats.reasoning_tokens for d in dones)}
    return out


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


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", "replace"))


def chat_logprobs(items: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""
    return {
        "content": [
            {"token": t.token, "logprob": t.logprob, "bytes": _token_bytes(t.token),
             "top_logprobs": [{"token": tok, "logprob": lp, "bytes": _token_bytes(tok)}
                              for tok, lp in t.top]}
            for t in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: tuple[TokenLogprob, ...], offset: int = 0) -> dict[str, Any]:
    """The completions API's ``logprobs``: parallel lists, and each token's text offset."""
    offsets, at = [], offset
    for t in items:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [dict(t.top) for t in items],
        "text_offset": offsets,
    }


class OpenAIReply:
    """A chat or completion answer; see ``tui.serve.schema.Reply``."""

    def __init__(self, req: GenerationRequest, model: str) -> None:
        self.req = req
        self.model = model
        self.chat = req.kind == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self._started: set[int] = set()

    def _object(self, stream: bool) -> str:
        if not self.chat:
            return "text_completion"
        return "chat.completion.chunk" if stream else "chat.completion"

    def _chunk(self, choice: dict[str, Any], **extra: Any) -> Frame:
        return (None, {"id": self.id, "object": self._object(True), "created": self.created,
                       "model": self.model, "choices": [choice], **extra})

    def _piece(self, index: int, delta: dict[str, Any]) -> list[Frame]:
        frames = [] if index in self._started else self._role(index)
        if self.chat:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": index, "text": delta.get("content", ""), "logprobs": None,
                      "finish_reason": None}
        return [*frames, self._chunk(choice)]

    def _role(self, index: int) -> list[Frame]:
        self._started.add(index)
        if not self.chat:
            return []
        return [self._chunk({"index": index, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None})]

    def _echo(self, index: int) -> str:
        prompt = self.req.generations[index].raw_prompt if self.req.echo else None
        return prompt or ""

    def opening(self) -> list[Frame]:
        frames = self._role(0)
        echo = self._echo(0)
        return [*frames, *self._piece(0, {"content": echo})] if echo else frames

    def reasoning(self, index: int, text: str) -> list[Frame]:
        return self._piece(index, {"reasoning_content": text}) if self.chat else []

    def text(self, index: int, text: str) -> list[Frame]:
        frames: list[Frame] = []
        if index not in self._started and self._echo(index):
            frames = self._piece(index, {"content": self._echo(index)})
        return frames + self._piece(index, {"content": text})

    def tool_call(self, index: int, delta: ToolCallDelta) -> list[Frame]:
        if not self.chat:
            return []
        piece: dict[str, Any] = {"index": delta.index}
        if delta.id:  # a call's first piece
            piece.update(id=delta.id, type="function",
                         function={"name": delta.name, "arguments": delta.arguments})
        else:
            piece["function"] = {"arguments": delta.arguments}
        return self._piece(index, {"tool_calls": [piece]})

    def choice_done(self, index: int, done: Done) -> list[Frame]:
        frames = [] if index in self._started else self._role(index)
        if done.error:
            frames.append((None, error_body(done.error, "server_error", None,
                                            "generation_failed")))
        finish = FINISH[done.stats.stop_reason]
        logprobs = self._logprobs(index, done) if self.req.logprobs else None
        if self.chat:
            choice = {"index": index, "delta": {}, "logprobs": logprobs, "finish_reason": finish}
        else:
            choice = {"index": index, "text": "", "logprobs": logprobs, "finish_reason": finish}
        extra: dict[str, Any] = {"timings": timings(done.stats)}
        if len(self.req.generations) == 1:
            extra["usage"] = usage([done])
        frames.append(self._chunk(choice, **extra))
        return frames

    def closing(self, dones: list[Done]) -> list[Frame]:
        frames: list[Frame] = []
        if self.req.include_usage:
            frames.append((None, {"id": self.id, "object": self._object(True),
                                  "created": self.created, "model": self.model, "choices": [],
                                  "usage": usage(dones), "timings": timings(dones[-1].stats)}))
        frames.append((None, "[DONE]"))
        return frames

    def _logprobs(self, index: int, done: Done) -> dict[str, Any]:
        if self.chat:
            return chat_logprobs(done.logprobs)
        return completion_logprobs(done.logprobs, len(self._echo(index)))

    def answer(self, dones: list[Done]) -> dict[str, Any]:
        choices = []
        for index, done in enumerate(dones):
            finish = FINISH[done.stats.stop_reason]
            logprobs = self._logprobs(index, done) if self.req.logprobs else None
            if self.chat:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": done.text if done.text or not done.tool_calls else None}
                if done.reasoning:
                    message["reasoning_content"] = done.reasoning
                if done.tool_calls:
                    message["tool_calls"] = [
                        {"id": c.id, "type": "function",
                         "function": {"name": c.name, "arguments": c.arguments}}
                        for c in done.tool_calls]
                choices.append({"index": index, "message": message, "logprobs": logprobs,
                                "finish_reason": finish})
            else:
                choices.append({"index": index, "text": self._echo(index) + done.text,
                                "logprobs": logprobs, "finish_reason": finish})
        return {
            "id": self.id,
            "object": self._object(False),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(dones),
            "timings": timings(dones[-1].stats),
        }
