"""The answer of OpenAI's Responses API (``POST /v1/responses``): the response object and its
event stream, output items in order: ``reasoning`` (a thinking model's), ``message``, and a
``function_call`` item per tool call. The request side is ``tui.serve.responses_api``."""

from __future__ import annotations

import secrets
import time
from typing import Any

from tui.engine.protocol import Done, TokenLogprob, ToolCallDelta
from tui.serve.schema import Frame, GenerationRequest


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
        self._call: dict[str, Any] = {}
        """The function call streaming now (its item, without its arguments)."""
        self._arguments: list[str] = []

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
            "output": output, "previous_response_id": None, "store": False,
            "truncation": "disabled",
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

    @staticmethod
    def _call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        return {"id": "fc_" + secrets.token_hex(12), "type": "function_call", "status": status,
                "call_id": call_id, "name": name, "arguments": arguments}

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
        if self._open == "call":
            arguments = "".join(self._arguments)
            item = {**self._call, "arguments": arguments, "status": "completed"}
            self._output.append(item)
            self._open = None
            return [self._event("response.function_call_arguments.done", item_id=item["id"],
                                output_index=index, name=item["name"], arguments=arguments),
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

    def tool_call(self, index: int, delta: ToolCallDelta) -> list[Frame]:
        frames: list[Frame] = []
        if delta.id:  # a new call: its own output item
            frames = self._finish_open(None)
            self._open = "call"
            self._call = self._call_item(delta.id, delta.name, "", "in_progress")
            self._arguments = []
            frames.append(self._event("response.output_item.added",
                                      output_index=len(self._output), item=self._call))
        if delta.arguments and self._open == "call":
            self._arguments.append(delta.arguments)
            frames.append(self._event("response.function_call_arguments.delta",
                                      item_id=self._call["id"], output_index=len(self._output),
                                      delta=delta.arguments))
        return frames

    def choice_done(self, index: int, done: Done) -> list[Frame]:
        if done.error:
            return self._finish_open(done)
        answered = self._open in ("message", "call") or any(
            i["type"] in ("message", "function_call") for i in self._output)
        frames = [] if answered else self._begin("message")
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
        if done.text or not done.tool_calls:
            output.append(self._message_item(done.text, status, logprobs))
        output.extend(self._call_item(c.id, c.name, c.arguments, "completed")
                      for c in done.tool_calls)
        return self._response(status, output, done)
