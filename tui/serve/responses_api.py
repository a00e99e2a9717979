"""OpenAI's Responses API (``POST /v1/responses``), the default of n8n's OpenAI chat node and
of newer OpenAI SDK code, on the same reply pipeline as chat completions.

``input`` is a string or a list of message items (roles user, system, developer, assistant;
content a string or ``input_text``/``output_text`` parts); ``instructions`` becomes the system
message; ``text.format`` is ``text``, ``json_object`` or ``json_schema`` (the same constrained
output as chat's ``response_format``). A thinking model's reasoning is a ``reasoning`` output
item before the message; ``reasoning.effort`` (or llama-server's ``reasoning_budget``, in
tokens) bounds it.

No server-side state: ``store`` and ``metadata`` are accepted and ignored (the answer says
``store: false``), and ``previous_response_id`` / ``conversation`` are refused with a 400 that
says to send the whole conversation in ``input``.

Function tools: ``tools`` of type function, ``tool_choice`` and ``parallel_tool_calls`` in;
``function_call`` output items out (streamed as ``response.function_call_arguments.delta``);
``function_call`` and ``function_call_output`` input items become the assistant's calls and
the tools' results in the history. Hosted tools (web search, file search...) are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tui.engine.protocol import (
    ChatMessage,
    ToolCall,
    ToolSpec,
)
from tui.i18n import _
from tui.serve.schema import (
    EFFORT_BUDGETS,
    ROLES,
    Body,
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
from tui.serve.tool_calls import (
    CHOICES,
    arguments_text,
    check_choice,
    check_tools,
    name_results,
    tool_bodies,
    tool_spec,
)

TEXT_PARTS = ("input_text", "output_text", "text")


def _input_item(item: Body, where: str, pending_reasoning: list[str]) -> ChatMessage | None:
    """One item of ``input`` as a message; None for an item that adds none (reasoning)."""
    kind = item.get("type") or "message"
    if kind == "message":
        role = ROLES.get(str(item.get("role")))
        if role is None:
            raise bad(_("{where}.role must be user, system, developer or assistant, got "
                        "{role!r}", where=where, role=item.obj.get("role")), f"{where}.role")
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
    if kind == "function_call":
        call_id = item.string("call_id") or item.string("id")
        name = item.string("name")
        if not call_id or not name:
            raise bad(_("{where}: a function_call item needs call_id and name", where=where),
                      where)
        item.get("id")
        item.get("status")
        arguments = arguments_text(item.get("arguments"), f"{where}.arguments")
        reasoning = "".join(pending_reasoning)
        pending_reasoning.clear()
        return ChatMessage("assistant", "", reasoning=reasoning,
                           tool_calls=(ToolCall(call_id, name, arguments),))
    if kind == "function_call_output":
        call_id = item.string("call_id")
        if not call_id:
            raise bad(_("{where}: a function_call_output item needs the call_id it answers",
                        where=where), f"{where}.call_id")
        item.get("id")
        item.get("status")
        output = item.get("output")
        content = output if isinstance(output, str) else text_content(
            output, f"{where}.output", TEXT_PARTS)
        return ChatMessage("tool", content, tool_call_id=call_id)
    raise bad(_("{where}.type {kind!r} is not an input item this server takes (message, "
                "reasoning, function_call or function_call_output)", where=where, kind=kind),
              f"{where}.type")


def _merge_calls(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Consecutive assistant items as one assistant turn: a message and the function calls
    after it (the Responses API lists each call as its own item)."""
    out: list[ChatMessage] = []
    for message in messages:
        last = out[-1] if out else None
        if (last is not None and last.role == "assistant" and message.role == "assistant"
                and message.tool_calls and not message.content):
            out[-1] = dataclasses.replace(last, tool_calls=last.tool_calls + message.tool_calls,
                                          reasoning=last.reasoning + message.reasoning)
        else:
            out.append(message)
    return out


def _tools(body: Body) -> tuple[tuple[ToolSpec, ...], str, bool]:
    """``tools`` (function tools, in the Responses API's flat shape), ``tool_choice`` and
    ``parallel_tool_calls``."""
    specs: list[ToolSpec] = []
    for where, tool in tool_bodies(body, _("function tools")):
        kind = tool.get("type")
        if kind != "function":
            raise bad(_("{where}.type {kind!r} is not offered here: only function tools (the "
                        "client runs them)", where=where, kind=kind), f"{where}.type",
                      "unsupported")
        tool.get("strict")
        specs.append(tool_spec(tool.get("name"), tool.get("description"),
                               tool.get("parameters"), where))
    tools = check_tools(specs, "tools")
    choice = body.get("tool_choice")
    if choice is None:
        named = "auto"
    elif isinstance(choice, str) and choice in CHOICES:
        named = choice
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("name"), str):
        named = choice["name"]
    else:
        raise bad(_("tool_choice must be one of {choices} or {example}",
                    choices=", ".join(CHOICES), example='{"type": "function", "name": ...}'),
                  "tool_choice")
    parallel = body.boolean("parallel_tool_calls")
    return tools, check_choice(named, tools, "tool_choice"), parallel is not False


def _messages(body: Body) -> tuple[ChatMessage, ...]:
    out: list[ChatMessage] = []
    instructions = body.string("instructions")
    if instructions:
        out.append(ChatMessage("system", instructions))
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise bad(_("input is empty"), "input")
        return (*out, ChatMessage("user", value))
    if not isinstance(value, list) or not value:
        raise bad(_("input must be a string or a non-empty list of message items"), "input")
    pending: list[str] = []
    for i, raw in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(raw, dict):
            raise bad(_("{where} must be an object (a message item)", where=where), where)
        item = Body(raw, where)
        body.include(item)
        message = _input_item(item, where, pending)
        if message is not None:
            out.append(message)
    if not any(m.role != "system" for m in out):
        raise bad(_("input holds no user or assistant message"), "input")
    return name_results(_merge_calls(out), "input")


def parse(obj: dict[str, Any], *, default_max_tokens: int, max_tokens_limit: int
          ) -> GenerationRequest:
    body = Body(obj)
    model = body.string("model")
    stream = body.boolean("stream") or False
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise bad(_("{key} needs responses stored on the server, and lmdesk keeps none: "
                        "send the whole conversation in input", key=key), key, "unsupported")
    tools, choice, parallel = _tools(body)
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
            raise bad(_("text.format.schema is missing"), "text.format.schema")
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
    budget = body.integer("reasoning_budget", low=-1)  # llama-server's, in tokens
    if budget is not None:
        values["reasoning_budget"] = budget
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
        "tools": body.obj.get("tools") or [], "parallel_tool_calls": parallel,
        "tool_choice": body.obj.get("tool_choice") or "auto",
    }
    return GenerationRequest(
        kind="responses", model=model,
        generations=(Generation(messages, None, sampling, tools, choice),),
        stream=stream, max_tokens_clamped=clamped, ignored=ignored_names(body),
        logprobs=top is not None, extras=extras, parallel_tool_calls=parallel,
    )
