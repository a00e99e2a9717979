"""OpenAI's Responses API (``POST /v1/responses``), the default of n8n's OpenAI chat node and
of newer OpenAI SDK code, on the same reply pipeline as chat completions.

``input`` is a string or a list of message items (roles user, system, developer, assistant;
content a string or ``input_text``/``output_text`` parts); ``instructions`` becomes the system
message; ``text.format`` is ``text``, ``json_object`` or ``json_schema`` (the same constrained
output as chat's ``response_format``). A thinking model's reasoning is a ``reasoning`` output
item before the message.

No server-side state: ``store`` and ``metadata`` are accepted and ignored (the answer says
``store: false``), and ``previous_response_id`` / ``conversation`` are refused with a 400 that
says to send the whole conversation in ``input``. Function tools (``tools`` of type function,
``function_call`` output items, ``function_call_output`` input items) arrive with the tools
work: until then a request using them is refused plainly, and ``_input_item`` is where those
items will become tool-call and tool-result messages.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tui.engine.protocol import ChatMessage, Done, Role, TokenLogprob
from tui.serve.schema import (
    EFFORT_BUDGETS,
    Body,
    Frame,
    Generation,
    GenerationRequest,
    bad,
    ignored_names,
    json_format,
    make_sampling,
    max_tokens,
    sampling_values,
    stop_strings,
    text_content,
)

ROLES: dict[str, Role] = {
    "user": "user", "system": "system", "developer": "system", "assistant": "assistant"
}
TEXT_PARTS = ("input_text", "output_text", "text")


def _input_item(item: Body, where: str, pending_reasoning: list[str]) -> ChatMessage | None:
    """One item of ``input`` as a message; None for an item that adds none (reasoning)."""
    kind = item.get("type") or "message"
    if kind == "message":
        role = ROLES.get(str(item.get("role")))
        if role is None:
            raise bad(f"{where}.role must be user, system, developer or assistant, got "
                      f"{item.obj.get('role')!r}", f"{where}.role")
        item.get("id")
        item.get("status")
        content = text_content(item.get("content"), f"{where}.content", TEXT_PARTS)
        reasoning = ""
        if role == "assistant" and pending_reasoning:
            reasoning = "".join(pending_reasoning)
            pending_reasoning.clear()
        return ChatMessage(role, content, reasoning=reasoning)
    if kind == "reasoning":  # an earlier answer's reasoning, sent back with its message
        for part in (item.get("content") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                pending_reasoning.append(part["text"])
        item.get("summary")
        item.get("id")
        item.get("encrypted_content")
        return None
    if kind in ("function_call", "function_call_output"):
        raise bad(f"{where}: {kind} items need function tools, which this server does not "
                  "offer yet", f"{where}.type", "unsupported")
    raise bad(f"{where}.type {kind!r} is not an input item this server takes (message or "
              "reasoning)", f"{where}.type")


def _messages(body: Body) -> tuple[ChatMessage, ...]:
    out: list[ChatMessage] = []
    instructions = body.string("instructions")
    if instructions:
        out.append(ChatMessage("system", instructions))
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise bad("input is empty", "input")
        return (*out, ChatMessage("user", value))
    if not isinstance(value, list) or not value:
        raise bad("input must be a string or a non-empty list of message items", "input")
    pending: list[str] = []
    for i, raw in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(raw, dict):
            raise bad(f"{where} must be an object (a message item)", where)
        item = Body(raw, where)
        body.include(item)
        message = _input_item(item, where, pending)
        if message is not None:
            out.append(message)
    if not any(m.role != "system" for m in out):
        raise bad("input holds no user or assistant message", "input")
    return tuple(out)


def parse(obj: dict[str, Any], *, default_max_tokens: int, max_tokens_limit: int
          ) -> GenerationRequest:
    body = Body(obj)
    model = body.string("model")
    stream = body.boolean("stream") or False
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise bad(f"{key} needs responses stored on the server, and lmdesk keeps none: "
                      "send the whole conversation in input", key, "unsupported")
    if body.get("tools"):
        raise bad("function tools are not offered by this server yet: send the request "
                  "without 'tools'", "tools", "unsupported")
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("none", "auto"):
        raise bad("tool_choice needs tools, which this server does not offer yet",
                  "tool_choice", "unsupported")
    messages = _messages(body)
    limit, clamped = max_tokens(body.integer("max_output_tokens"), "max_output_tokens",
                                default_max_tokens, max_tokens_limit)
    values = sampling_values(body)
    values["max_tokens"] = limit
    values["stop"] = stop_strings(body.get("stop"), "stop")
    fmt_echo: dict[str, Any] = {"type": "text"}
    text = body.child("text")
    fmt = text.child("format") if text is not None else None
    if fmt is not None:
        kind = fmt.string("type")
        schema = fmt.get("schema") if kind == "json_schema" else None
        if kind == "json_schema" and schema is None:
            raise bad("text.format.schema is missing", "text.format.schema")
        fmt.get("name")
        fmt.get("strict")
        fmt.get("description")
        values["json_schema"] = json_format(kind, schema, "text.format")
        fmt_echo = dict(fmt.obj)
    effort = None
    reasoning = body.child("reasoning")
    if reasoning is not None:
        effort = reasoning.choice("effort", tuple(EFFORT_BUDGETS))
        if effort is not None:
            values["reasoning_budget"] = EFFORT_BUDGETS[effort]
    top = body.integer("top_logprobs", low=0, high=20)
    if top is not None:
        values["top_logprobs"] = top
    body.choice("truncation", ("auto", "disabled"))
    sampling = make_sampling(values, {"max_tokens": "max_output_tokens",
                                      "json_schema": "text.format"})
    extras = {
        "instructions": body.obj.get("instructions"),
        "max_output_tokens": body.obj.get("max_output_tokens"),
        "temperature": sampling.temperature, "top_p": sampling.top_p,
        "text": {"format": fmt_echo}, "reasoning": {"effort": effort, "summary": None},
        "metadata": body.obj.get("metadata") if isinstance(body.obj.get("metadata"), dict)
        else {},
        "top_logprobs": top,
    }
    return GenerationRequest(
        kind="responses", model=model, generations=(Generation(messages, None, sampling),),
        stream=stream, max_tokens_clamped=clamped, ignored=ignored_names(body),
        logprobs=top is not None, extras=extras,
    )


def _logprobs(items: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    def raw(token: str) -> list[int]:
        return list(token.encode("utf-8", "replace"))

    return [{"token": t.token, "logprob": t.logprob, "bytes": raw(t.token),
             "top_logprobs": [{"token": tok, "logprob": lp, "bytes": raw(tok)}
                              for tok, lp in t.top]} for t in items]


def _usage(done: Done) -> dict[str, Any]:
    s = done.stats
    return {"input_tokens": s.prompt_tokens,
            "input_tokens_details": {"cached_tokens": s.reused_tokens},
            "output_tokens": s.generated_tokens,
            "output_tokens_details": {"reasoning_tokens": s.reasoning_tokens},
            "total_tokens": s.prompt_tokens + s.generated_tokens}


class ResponsesReply:
    """A Responses answer; see ``tui.serve.schema.Reply``."""

    def __init__(self, req: GenerationRequest, model: str) -> None:
        self.req = req
        self.model = model
        self.id = "resp_" + secrets.token_hex(12)
        self.message_id = "msg_" + secrets.token_hex(12)
        self.reasoning_id = "rs_" + secrets.token_hex(12)
        self.created = int(time.time())
        self._seq = 0
        self._open: str | None = None
        """The output item streaming now: "reasoning" or "message"."""
        self._output: list[dict[str, Any]] = []
        self._reasoning: list[str] = []
        self._text: list[str] = []

    def _event(self, kind: str, **fields: Any) -> Frame:
        obj = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return (kind, obj)

    def _response(self, status: str, output: list[dict[str, Any]], done: Done | None
                  ) -> dict[str, Any]:
        incomplete = ({"reason": "max_output_tokens"}
                      if done is not None and done.stats.stop_reason == "length" else None)
        error = ({"code": "server_error", "message": done.error}
                 if done is not None and done.error else None)
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "error": error, "incomplete_details": incomplete, "model": self.model,
            "output": output, "parallel_tool_calls": False, "previous_response_id": None,
            "store": False, "tool_choice": "auto", "tools": [], "truncation": "disabled",
            "usage": _usage(done) if done is not None else None, "user": None,
            **self.req.extras,
        }

    @staticmethod
    def _status(done: Done) -> str:
        if done.error:
            return "failed"
        return "incomplete" if done.stats.stop_reason == "length" else "completed"

    def _reasoning_item(self, text: str, status: str) -> dict[str, Any]:
        content = [{"type": "reasoning_text", "text": text}] if text else []
        return {"id": self.reasoning_id, "type": "reasoning", "summary": [],
                "content": content, "status": status}

    def _text_part(self, text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}

    def _message_item(self, text: str, status: str, logprobs: list[dict[str, Any]]
                      ) -> dict[str, Any]:
        content = [self._text_part(text, logprobs)] if status != "in_progress" else []
        return {"id": self.message_id, "type": "message", "status": status,
                "role": "assistant", "content": content}

    def opening(self) -> list[Frame]:
        start = self._response("in_progress", [], None)
        return [self._event("response.created", response=start),
                self._event("response.in_progress", response=start)]

    def _begin(self, kind: str) -> list[Frame]:
        if self._open == kind:
            return []
        frames = self._finish_open(None)
        self._open = kind
        index = len(self._output)
        if kind == "reasoning":
            return [*frames,
                    self._event("response.output_item.added", output_index=index,
                                item=self._reasoning_item("", "in_progress")),
                    self._event("response.content_part.added", item_id=self.reasoning_id,
                                output_index=index, content_index=0,
                                part={"type": "reasoning_text", "text": ""})]
        return [*frames,
                self._event("response.output_item.added", output_index=index,
                            item=self._message_item("", "in_progress", [])),
                self._event("response.content_part.added", item_id=self.message_id,
                            output_index=index, content_index=0,
                            part=self._text_part("", []))]

    def _finish_open(self, done: Done | None) -> list[Frame]:
        index = len(self._output)
        if self._open == "reasoning":
            text = "".join(self._reasoning)
            item = self._reasoning_item(text, "completed")
            self._output.append(item)
            self._open = None
            return [self._event("response.reasoning_text.done", item_id=self.reasoning_id,
                                output_index=index, content_index=0, text=text),
                    self._event("response.content_part.done", item_id=self.reasoning_id,
                                output_index=index, content_index=0,
                                part={"type": "reasoning_text", "text": text}),
                    self._event("response.output_item.done", output_index=index, item=item)]
        if self._open == "message":
            text = "".join(self._text)
            logprobs = _logprobs(done.logprobs) if done is not None and self.req.logprobs else []
            status = "incomplete" if done is not None and done.stats.stop_reason == "length" \
                else "completed"
            item = self._message_item(text, status, logprobs)
            self._output.append(item)
            self._open = None
            return [self._event("response.output_text.done", item_id=self.message_id,
                                output_index=index, content_index=0, text=text,
                                logprobs=logprobs),
                    self._event("response.content_part.done", item_id=self.message_id,
                                output_index=index, content_index=0,
                                part=self._text_part(text, logprobs)),
                    self._event("response.output_item.done", output_index=index, item=item)]
        return []

    def reasoning(self, index: int, text: str) -> list[Frame]:
        self._reasoning.append(text)
        return [*self._begin("reasoning"),
                self._event("response.reasoning_text.delta", item_id=self.reasoning_id,
                            output_index=len(self._output), content_index=0, delta=text)]

    def text(self, index: int, text: str) -> list[Frame]:
        self._text.append(text)
        return [*self._begin("message"),
                self._event("response.output_text.delta", item_id=self.message_id,
                            output_index=len(self._output), content_index=0, delta=text,
                            logprobs=[])]

    def choice_done(self, index: int, done: Done) -> list[Frame]:
        if done.error:
            return self._finish_open(done)
        frames = [] if any(i["type"] == "message" for i in self._output) or \
            self._open == "message" else self._begin("message")
        return frames + self._finish_open(done)

    def closing(self, dones: list[Done]) -> list[Frame]:
        done = dones[-1]
        status = self._status(done)
        # a reply cut at max_output_tokens still ends with response.completed (its status
        # says "incomplete"): the official client's stream helper waits for that event
        kind = "response.failed" if status == "failed" else "response.completed"
        return [self._event(kind, response=self._response(status, self._output, done))]

    def answer(self, dones: list[Done]) -> dict[str, Any]:
        done = dones[-1]
        output: list[dict[str, Any]] = []
        if done.reasoning:
            output.append(self._reasoning_item(done.reasoning, "completed"))
        logprobs = _logprobs(done.logprobs) if self.req.logprobs else []
        status = self._status(done)
        output.append(self._message_item(done.text, status, logprobs))
        return self._response(status, output, done)
