"""What the API dialects share about tool calling: the offered tools, the choice, call ids.

``lmdesk serve`` speaks tool calling as OpenAI does: the client runs the tools. A request
offers tools (each dialect names them its own way) and a choice (``auto``, ``none``,
``required`` or one tool's name, as ``ToolChoice``); the engine answers with calls; the client
sends the calls back in the history with their results. ``CallNormalizer`` sits between the
engine and a dialect's ``Reply``: it gives every call an id, keeps one call per reply when
the client asked for no parallel calls, and says ``tool_calls`` as the stop reason of a reply
that ends with calls.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

from tui.engine.protocol import ChatMessage, Done, EngineEvent, ToolCall, ToolCallDelta, ToolSpec
from tui.i18n import _
from tui.serve.schema import Body, bad

MAX_TOOLS = 128
"""At most this many tools per request (OpenAI's own bound)."""
MAX_NAME = 128
CHOICES = ("auto", "none", "required")


def tool_bodies(body: Body, shape: str) -> Iterator[tuple[str, Body]]:
    """Each entry of a request's ``tools`` list, as (where, the entry), read as part of the
    request (``shape`` names what the list holds in the message for a bad one)."""
    value = body.get("tools")
    if value is not None and not isinstance(value, list):
        raise bad(_("tools must be a list of {shape}", shape=shape), "tools")
    for i, raw in enumerate(value or []):
        where = f"tools[{i}]"
        if not isinstance(raw, dict):
            raise bad(_("{key} must be an object", key=where), where)
        tool = Body(raw, where)
        body.include(tool)
        yield where, tool


def tool_spec(name: Any, description: Any, parameters: Any, where: str) -> ToolSpec:
    """One offered tool, checked; ``where`` names it in errors (``tools[2]``)."""
    if not isinstance(name, str) or not name.strip():
        raise bad(_("{where} needs a name (a non-empty string)", where=where), f"{where}.name")
    if len(name) > MAX_NAME or any(ch.isspace() for ch in name):
        raise bad(_("{where}.name must be at most {MAX_NAME} characters with no spaces",
                    where=where, MAX_NAME=MAX_NAME), f"{where}.name")
    if description is not None and not isinstance(description, str):
        raise bad(_("{where}.description must be a string", where=where),
                  f"{where}.description")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if isinstance(parameters, bool) or not isinstance(parameters, dict):
        param = f"{where}.parameters"
        raise bad(_("{param} must be a JSON schema (an object)", param=param), param)
    return ToolSpec(name, description or "", json.dumps(parameters, ensure_ascii=False))


def check_tools(tools: Sequence[ToolSpec], param: str) -> tuple[ToolSpec, ...]:
    if len(tools) > MAX_TOOLS:
        raise bad(_("{param} holds {count} tools; at most {MAX_TOOLS}", param=param,
                    count=len(tools), MAX_TOOLS=MAX_TOOLS), param)
    seen: set[str] = set()
    for spec in tools:
        if spec.name in seen:
            raise bad(_("{param}: two tools are named {name!r}", param=param, name=spec.name),
                      param)
        seen.add(spec.name)
    return tuple(tools)


def check_choice(choice: str, tools: Sequence[ToolSpec], param: str) -> str:
    """``choice`` against the offered tools: a named tool must be one of them, and anything
    but ``auto``/``none`` needs tools."""
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise bad(_("{param} {choice!r} needs tools, and the request offers none",
                    param=param, choice=choice), param)
    if choice != "required" and choice not in {t.name for t in tools}:
        names = ", ".join(t.name for t in tools)
        raise bad(_("{param} names {choice!r}, which is not among the tools ({names})",
                    param=param, choice=choice, names=names), param)
    return choice


def arguments_text(value: Any, where: str) -> str:
    """A call's arguments as JSON text (clients send a string, some an object)."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    raise bad(_("{where} must be JSON text (a string) or an object", where=where), where)


def arguments_object(text: str) -> dict[str, Any]:
    """A call's arguments as an object (Anthropic's ``tool_use.input``); text that is not a
    JSON object (a model that wrote nonsense) becomes ``{}``."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def name_results(messages: Sequence[ChatMessage], param: str) -> tuple[ChatMessage, ...]:
    """Tool results with their function's name, found from the call they answer (OpenAI's
    tool messages carry only the call's id; chat templates often want the name). A result
    that answers no earlier call is a 400, as OpenAI has it."""
    names: dict[str, str] = {}
    out: list[ChatMessage] = []
    for message in messages:
        for call in message.tool_calls:
            names[call.id] = call.name
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            if call_id not in names:
                raise bad(_("a tool result answers call {call_id!r}, which no earlier "
                            "assistant message made: send the call before its result",
                            call_id=call_id), param)
            if not message.name:
                message = dataclasses.replace(message, name=names[call_id])
        out.append(message)
    return tuple(out)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class CallNormalizer:
    """One reply's tool calls as the client sees them, streamed and in the ``Done``."""

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = parallel
        self._ids: dict[int, str] = {}

    def _id(self, index: int, given: str) -> str:
        if index not in self._ids:
            self._ids[index] = given or new_call_id()
        return self._ids[index]

    def _kept(self, index: int) -> bool:
        return self.parallel or index == 0

    def delta(self, delta: ToolCallDelta) -> ToolCallDelta | None:
        """The delta with its call's id on the first piece; None for a call dropped."""
        if not self._kept(delta.index):
            return None
        first = delta.index not in self._ids
        call_id = self._id(delta.index, delta.id)
        return dataclasses.replace(delta, id=call_id if first else "")

    def done(self, done: Done) -> Done:
        calls = tuple(ToolCall(self._id(i, c.id), c.name, c.arguments)
                      for i, c in enumerate(done.tool_calls) if self._kept(i))
        stats = done.stats
        if calls and stats.stop_reason == "stop":
            stats = dataclasses.replace(stats, stop_reason="tool_calls")
        elif not calls and stats.stop_reason == "tool_calls":
            stats = dataclasses.replace(stats, stop_reason="stop")
        return dataclasses.replace(done, tool_calls=calls, stats=stats)

    def events(self, events: Iterator[EngineEvent]) -> Iterator[EngineEvent]:
        for event in events:
            if isinstance(event, ToolCallDelta):
                kept = self.delta(event)
                if kept is not None:
                    yield kept
            elif isinstance(event, Done):
                yield self.done(event)
            else:
                yield event
