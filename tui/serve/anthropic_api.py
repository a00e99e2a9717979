"""Anthropic's Messages API (``POST /v1/messages``), so tools built on Anthropic's SDK can use a
local model: ``system``, text blocks, ``max_tokens``, ``stop_sequences``, ``thinking``, and the
event stream (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``).

A thinking model's reasoning comes as a ``thinking`` block before the ``text`` block. Errors
are in Anthropic's shape (``{"type": "error", "error": {"type", "message"}}``). Not yet:
tool use (the tools work), images and documents (text models), and naming which stop
sequence ended a reply (the engine does not say; ``stop_sequence`` stays null).
"""

from __future__ import annotations

import secrets
from typing import Any

from tui.engine.protocol import ChatMessage, Done, Role
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

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "cancelled": "end_turn",
                "error": "end_turn", "tool_calls": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error"}


def error_shape(exc: ApiError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(exc.status, "api_error" if exc.status >= 500 else
                           "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def _blocks(content: Any, where: str, role: Role) -> tuple[str, str]:
    """A message's text and (an assistant's) thinking, from a string or a list of blocks."""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise bad(f"{where} must be a string or a list of content blocks", where)
    text, thinking = [], []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            if isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
        elif kind in ("tool_use", "tool_result"):
            raise bad(f"{where}[{i}]: tool use needs tool calling, which this server does not "
                      "offer yet", where)
        else:
            raise bad(f"{where}[{i}]: only text blocks are supported (got {kind!r}); this "
                      "server runs text models", where)
    return "".join(text), "".join(thinking)


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
        text, _ = _blocks(system, "system", "system")
        if text:
            messages.append(ChatMessage("system", text))
    items = body.get("messages")
    if not isinstance(items, list) or not items:
        raise bad("messages must be a non-empty list", "messages")
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object with role and content", where)
        msg = Body(item, where)
        body.include(msg)
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise bad(f"{where}.role must be user or assistant, got {role!r}", f"{where}.role")
        text, thought = _blocks(msg.get("content"), f"{where}.content", role)
        messages.append(ChatMessage(role, text, reasoning=thought))
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
    if body.get("tools"):
        raise bad("tool use is not offered by this server yet: send the request without "
                  "'tools'", "tools")
    body.get("tool_choice")
    sampling = make_sampling(values, {"stop": "stop_sequences",
                                      "reasoning_budget": "thinking.budget_tokens"})
    return GenerationRequest(
        kind="messages", model=model, generations=(Generation(tuple(messages), None, sampling),),
        stream=stream, max_tokens_clamped=clamped, ignored=ignored_names(body),
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

    def _switch(self, kind: str) -> list[Frame]:
        if self._kind == kind:
            return []
        frames = self._close_block()
        self._block += 1
        self._kind = kind
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
        content.append({"type": "text", "text": done.text})
        return self._message(content, done)
