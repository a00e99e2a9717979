"""Anthropic's Messages API (``POST /v1/messages``), so tools built on Anthropic's SDK can use a
local model: ``system``, text blocks, ``max_tokens``, ``stop_sequences``, ``thinking``, and the
event stream (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``).

A thinking model's reasoning comes as a ``thinking`` block before the ``text`` block. Tool
use as Anthropic's: ``tools`` (custom tools with ``input_schema``) and ``tool_choice`` (auto,
any, tool, none; ``disable_parallel_tool_use``) in; ``tool_use`` blocks (streamed as
``input_json_delta``) with ``stop_reason: "tool_use"`` out; ``tool_use`` blocks of assistant
messages and ``tool_result`` blocks of user messages in the history (a result marked
``is_error`` reaches the model as "Error: ..."). Errors are in Anthropic's shape (``{"type":
"error", "error": {"type", "message"}}``). Not yet: images and documents (text models), and
naming which stop sequence ended a reply (the engine does not say; ``stop_sequence`` stays
null).
"""

from __future__ import annotations

import secrets
from typing import Any

from tui.engine.protocol import ChatMessage, Done, Role, ToolCall, ToolCallDelta, ToolSpec
from tui.i18n import _
from tui.serve.schema import (
    ApiError,
    Body,
    Frame,
    Generation,
    GenerationRequest,
    bad,
    ignored_names,
    make_sampling,
    max_tokens,
    stop_strings,
)
from tui.serve.tool_calls import (
    arguments_object,
    arguments_text,
    check_choice,
    check_tools,
    name_results,
    tool_bodies,
    tool_spec,
)

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "cancelled": "end_turn",
                "error": "end_turn", "tool_calls": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error"}


def error_shape(exc: ApiError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(exc.status, "api_error" if exc.status >= 500 else
                           "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def _result_text(content: Any, where: str) -> str:
    """A ``tool_result``'s content: a string or text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise bad(_("{where} must be a string or a list of text blocks", where=where), where)
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(
                block.get("text"), str):
            raise bad(_("{where}[{i}]: only text blocks are supported in a tool result",
                        where=where, i=i), where)
        parts.append(block["text"])
    return "".join(parts)


def _message(content: Any, where: str, role: Role) -> list[ChatMessage]:
    """One message of the request as engine messages: an assistant's text, thinking and
    ``tool_use`` calls as one; a user's ``tool_result`` blocks each as a tool message, then
    its text."""
    if isinstance(content, str):
        return [ChatMessage(role, content)]
    if not isinstance(content, list):
        raise bad(_("{where} must be a string or a list of content blocks", where=where),
                  where)
    text, thinking = [], []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}[{i}]"
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            if isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
        elif kind == "tool_use" and role == "assistant":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str):
                raise bad(_("{at}: a tool_use block needs an id and a name", at=at), at)
            calls.append(ToolCall(call_id, name, arguments_text(block.get("input"),
                                                                f"{at}.input")))
        elif kind == "tool_result" and role == "user":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad(_("{at}: a tool_result block needs the tool_use_id it answers",
                            at=at), at)
            result = _result_text(block.get("content"), f"{at}.content")
            if block.get("is_error") is True:
                result = f"Error: {result}"
            results.append(ChatMessage("tool", result, tool_call_id=call_id))
        elif kind in ("tool_use", "tool_result"):
            raise bad(_("{at}: a tool_use block belongs in an assistant message", at=at)
                      if kind == "tool_use" else
                      _("{at}: a tool_result block belongs in a user message", at=at), at)
        else:
            raise bad(_("{at}: only text, thinking, tool_use and tool_result blocks are "
                        "supported (got {kind!r}); this server runs text models", at=at,
                        kind=kind), where)
    joined = "".join(text)
    if role == "user":
        return [*results, ChatMessage("user", joined)] if joined or not results else results
    return [ChatMessage(role, joined, reasoning="".join(thinking), tool_calls=tuple(calls))]


def _tools(body: Body) -> tuple[tuple[ToolSpec, ...], str, bool]:
    """``tools`` (custom tools), ``tool_choice`` and whether parallel calls are allowed."""
    specs: list[ToolSpec] = []
    for where, tool in tool_bodies(body, _("tools")):
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise bad(_("{where}.type {kind!r} is not offered here: only custom tools with an "
                        "input_schema (the client runs them)", where=where, kind=kind),
                      f"{where}.type")
        tool.get("cache_control")
        specs.append(tool_spec(tool.get("name"), tool.get("description"),
                               tool.get("input_schema"), where))
    tools = check_tools(specs, "tools")
    choice = body.child("tool_choice")
    named, parallel = "auto", True
    if choice is not None:
        kind = choice.choice("type", ("auto", "any", "tool", "none"))
        if choice.boolean("disable_parallel_tool_use"):
            parallel = False
        if kind == "any":
            named = "required"
        elif kind == "tool":
            name = choice.string("name")
            if not name:
                raise bad(_("tool_choice of type tool needs the tool's name"),
                          "tool_choice.name")
            named = name
        elif kind == "none":
            named = "none"
    return tools, check_choice(named, tools, "tool_choice"), parallel


def parse(obj: dict[str, Any], *, default_max_tokens: int, max_tokens_limit: int
          ) -> GenerationRequest:
    body = Body(obj)
    model = body.string("model")
    stream = body.boolean("stream") or False
    limit, clamped = max_tokens(body.integer("max_tokens"), "max_tokens", default_max_tokens,
                                max_tokens_limit)
    messages: list[ChatMessage] = []
    system = body.get("system")
    if system is not None:
        text = "".join(m.content for m in _message(system, "system", "system"))
        if text:
            messages.append(ChatMessage("system", text))
    items = body.get("messages")
    if not isinstance(items, list) or not items:
        raise bad(_("messages must be a non-empty list"), "messages")
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad(_("{where} must be an object with role and content", where=where), where)
        msg = Body(item, where)
        body.include(msg)
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise bad(_("{where}.role must be user or assistant, got {role!r}", where=where,
                        role=role), f"{where}.role")
        messages.extend(_message(msg.get("content"), f"{where}.content", role))
    values: dict[str, Any] = {"max_tokens": limit,
                              "stop": stop_strings(body.get("stop_sequences"), "stop_sequences")}
    for key in ("temperature", "top_p"):
        number = body.number(key)
        if number is not None:
            values[key] = number
    top_k = body.integer("top_k", low=0)
    if top_k is not None:
        values["top_k"] = top_k
    thinking = body.child("thinking")
    if thinking is not None:
        kind = thinking.choice("type", ("enabled", "disabled", "adaptive"))
        budget = thinking.integer("budget_tokens", low=0)
        if kind == "disabled":
            values["reasoning_budget"] = 0
        elif kind == "enabled" and budget is not None:
            values["reasoning_budget"] = budget
    tools, choice, parallel = _tools(body)
    sampling = make_sampling(values, {"stop": "stop_sequences",
                                      "reasoning_budget": "thinking.budget_tokens"})
    generation = Generation(name_results(messages, "messages"), None, sampling, tools, choice)
    return GenerationRequest(
        kind="messages", model=model, generations=(generation,), stream=stream,
        max_tokens_clamped=clamped, ignored=ignored_names(body), parallel_tool_calls=parallel,
    )


def _usage(done: Done) -> dict[str, Any]:
    s = done.stats
    return {"input_tokens": s.prompt_tokens - s.reused_tokens,
            "cache_read_input_tokens": s.reused_tokens,
            "cache_creation_input_tokens": 0,
            "output_tokens": s.generated_tokens}


class AnthropicReply:
    """A Messages answer; see ``tui.serve.schema.Reply``."""

    def __init__(self, req: GenerationRequest, model: str) -> None:
        self.req = req
        self.model = model
        self.id = "msg_" + secrets.token_hex(12)
        self._block = -1
        self._kind: str | None = None
        self._failed = False

    def _message(self, content: list[dict[str, Any]], done: Done | None) -> dict[str, Any]:
        stop = STOP_REASONS[done.stats.stop_reason] if done is not None else None
        usage = _usage(done) if done is not None else {
            "input_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
            "output_tokens": 0}
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def opening(self) -> list[Frame]:
        return [("message_start", {"type": "message_start", "message": self._message([], None)}),
                ("ping", {"type": "ping"})]

    def _switch(self, kind: str, block: dict[str, Any] | None = None) -> list[Frame]:
        if self._kind == kind and block is None:
            return []
        frames = self._close_block()
        self._block += 1
        self._kind = kind
        if block is None:
            block = ({"type": "text", "text": ""} if kind == "text"
                     else {"type": "thinking", "thinking": "", "signature": ""})
        frames.append(("content_block_start", {"type": "content_block_start",
                                               "index": self._block, "content_block": block}))
        return frames

    def _close_block(self) -> list[Frame]:
        if self._kind is None:
            return []
        self._kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._block})]

    def reasoning(self, index: int, text: str) -> list[Frame]:
        return [*self._switch("thinking"), ("content_block_delta", {
            "type": "content_block_delta", "index": self._block,
            "delta": {"type": "thinking_delta", "thinking": text}})]

    def text(self, index: int, text: str) -> list[Frame]:
        return [*self._switch("text"), ("content_block_delta", {
            "type": "content_block_delta", "index": self._block,
            "delta": {"type": "text_delta", "text": text}})]

    def tool_call(self, index: int, delta: ToolCallDelta) -> list[Frame]:
        frames: list[Frame] = []
        if delta.id:  # a new call: a tool_use block of its own
            frames = self._switch("tool_use", {"type": "tool_use", "id": delta.id,
                                               "name": delta.name, "input": {}})
        if delta.arguments and self._kind == "tool_use":
            frames.append(("content_block_delta", {
                "type": "content_block_delta", "index": self._block,
                "delta": {"type": "input_json_delta", "partial_json": delta.arguments}}))
        return frames

    def choice_done(self, index: int, done: Done) -> list[Frame]:
        if done.error:
            self._failed = True
            return [("error", {"type": "error", "error": {"type": "api_error",
                                                          "message": done.error}})]
        frames = [] if self._block >= 0 else self._switch("text")
        return frames + self._close_block()

    def closing(self, dones: list[Done]) -> list[Frame]:
        if self._failed:
            return []
        done = dones[-1]
        return [("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": STOP_REASONS[done.stats.stop_reason],
                                             "stop_sequence": None},
                                   "usage": _usage(done)}),
                ("message_stop", {"type": "message_stop"})]

    def answer(self, dones: list[Done]) -> dict[str, Any]:
        done = dones[-1]
        content: list[dict[str, Any]] = []
        if done.reasoning:
            content.append({"type": "thinking", "thinking": done.reasoning, "signature": ""})
        if done.text or not done.tool_calls:
            content.append({"type": "text", "text": done.text})
        content.extend({"type": "tool_use", "id": c.id, "name": c.name,
                        "input": arguments_object(c.arguments)} for c in done.tool_calls)
        return self._message(content, done)
