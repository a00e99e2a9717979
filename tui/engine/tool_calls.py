"""Tool calls in a model's own format: which one its chat template speaks, how the history is
written back, and how calls are cut out of a streamed reply.

Pure Python (no llama_cpp): the worker parses, the app process decides before sending whether
a model can call tools at all. The families, as llama.cpp's server knows them:

- ``hermes`` (Qwen2.5/3, Hermes, many fine-tunes): ``<tool_call>{"name": …, "arguments": …}
  </tool_call>``, one block per call, text may come before;
- ``llama3`` (Llama 3.1+): the reply is a JSON object ``{"name": …, "parameters": …}``,
  optionally after ``<|python_tag|>``;
- ``mistral``: ``[TOOL_CALLS][{"name": …, "arguments": …}, …]``, or the newer
  ``[TOOL_CALLS]name[ARGS]{…}`` per call;
- ``harmony`` (gpt-oss): a message on the commentary channel addressed ``to=functions.NAME``
  whose body is the arguments;
- ``generic``: a template that does not read ``tools``. Such a model is not offered tools
  when it may choose ("auto"); a forced call (``required`` or a function's name) is asked for
  in a system message and written as ``{"tool_call": {"name": …, "arguments": …}}`` under a
  grammar, as llama.cpp's server does for templates without tool support.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tui.engine.json_schema import ANNOTATIONS, FORMATS, SUPPORTED
from tui.engine.protocol import ChatMessage, ToolCall, ToolChoice, ToolSpec
from tui.i18n import _

Family = Literal["hermes", "llama3", "mistral", "harmony", "generic"]

FORCING_CHOICES = ("required", "any")
"""Choices that force a call of some tool (``any`` is Mistral's name for ``required``)."""


class ToolChoiceError(ValueError):
    """The tool choice names no offered tool, or is not a choice at all."""


def family_for_template(source: str | None) -> Family:
    """The tool-call format a chat template speaks; ``generic`` when it does not read tools."""
    text = source or ""
    if not re.search(r"\btools\b", text):
        return "generic"
    if "<|channel|>" in text and "functions." in text:
        return "harmony"
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<tool_call>" in text:
        return "hermes"
    if "<|python_tag|>" in text or "ipython" in text or '"parameters"' in text:
        return "llama3"
    return "hermes"  # reads tools but names no markup: the most common convention


def no_tool_support(model: str) -> str:
    """The one line for a model whose template cannot take tools (the session goes on
    without them)."""
    return _("{model}'s chat template has no tool support (only a required or named "
             "tool_choice can make it call one)", model=model)


def forced_name(choice: ToolChoice, tools: Sequence[ToolSpec]) -> str | None:
    """The tool a choice forces: its name, "" for any tool, None when the model may choose.
    Raises ToolChoiceError for a name that is not offered."""
    if choice in ("auto", "none", ""):
        return None
    if choice in FORCING_CHOICES:
        return ""
    names = [t.name for t in tools]
    if choice not in names:
        raise ToolChoiceError(_("tool_choice names {choice!r}, which is not among the tools "
                                "offered ({value})",
                                choice=choice, value=', '.join(names) or 'none'))
    return choice


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The ``tools`` a chat template reads (OpenAI's shape, as llama.cpp's server passes)."""
    return [{"type": "function", "function": {
        "name": t.name, "description": t.description, "parameters": _schema(t)}}
        for t in tools]


def _schema(tool: ToolSpec) -> Any:
    try:
        value = json.loads(tool.parameters)
    except ValueError:
        return {"type": "object"}
    return value if isinstance(value, dict) else {"type": "object"}


def arguments_value(text: str) -> Any:
    """A call's arguments as templates want them (an object), or the text when it is not
    JSON."""
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


# --- the history, written for the template -------------------------------------------------


def mistral_id(call_id: str) -> str:
    """Mistral's templates refuse ids that are not 9 letters or digits: map others stably."""
    if len(call_id) == 9 and call_id.isalnum():
        return call_id
    return hashlib.sha1(call_id.encode()).hexdigest()[:9]


def new_call_id(family: Family) -> str:
    if family == "mistral":
        alphabet = string.ascii_letters + string.digits
        return "".join(secrets.choice(alphabet) for _ in range(9))
    return f"call_{secrets.token_hex(8)}"


def history_for(messages: Sequence[ChatMessage], family: Family) -> tuple[ChatMessage, ...]:
    """Earlier calls and results in a form the template renders: ids remapped for Mistral;
    for a template without tools, calls as JSON in the assistant's text and results as user
    messages (llama.cpp's polyfill), so any template can show them."""
    if not any(m.tool_calls or m.role == "tool" for m in messages):
        return tuple(messages)
    out: list[ChatMessage] = []
    for m in messages:
        if family == "mistral":
            if m.tool_calls:
                m = replace(m, tool_calls=tuple(replace(c, id=mistral_id(c.id))
                                                for c in m.tool_calls))
            if m.tool_call_id is not None:
                m = replace(m, tool_call_id=mistral_id(m.tool_call_id))
            out.append(m)
        elif family != "generic":
            out.append(m)
        elif m.tool_calls:
            calls = [{"name": c.name, "arguments": arguments_value(c.arguments), "id": c.id}
                     for c in m.tool_calls]
            text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            out.append(ChatMessage("assistant", f"{m.content}\n{text}" if m.content else text))
        elif m.role == "tool":
            response = {"tool": m.name or "", "content": m.content}
            if m.tool_call_id:
                response["tool_call_id"] = m.tool_call_id
            out.append(ChatMessage("user", json.dumps({"tool_response": response},
                                                      ensure_ascii=False)))
        else:
            out.append(m)
    return tuple(out)


def generic_system(tools: Sequence[ToolSpec], name: str = "") -> str:
    """What a model without tool support is told when a call is forced (``name``: the tool it
    must call, "" for any): the tools in short, and the JSON to answer with."""
    lines = ["You have these tools:"]
    for tool in tools:
        schema = _schema(tool)
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        args = ", ".join(f'"{key}": {_type_of(value)}' for key, value in props.items())
        lines.append(f"- {tool.name}: {tool.description} Arguments: {{{args}}}")
    example = next((t for t in tools if t.name == name), tools[0])
    props = _schema(example).get("properties") or {}
    sample = {key: _sample_of(value) for key, value in props.items()} if isinstance(
        props, dict) else {}
    call = json.dumps({"tool_call": {"name": example.name, "arguments": sample}},
                      ensure_ascii=False)
    lines.append(f"\nTo call a tool, reply with JSON only, like this:\n{call}")
    return "\n".join(lines)


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    kind = schema.get("type")
    if "enum" in schema:
        kind = " | ".join(json.dumps(v) for v in schema["enum"])
    text = kind if isinstance(kind, str) else "any"
    if isinstance(schema.get("description"), str):
        text += f" ({schema['description']})"
    return text


def _sample_of(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "..."
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
        str(schema.get("type")), "...")


def with_system(messages: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    """``text`` added to the system message (or as one, first)."""
    if messages and messages[0].role == "system":
        first = messages[0]
        return (replace(first, content=f"{first.content}\n\n{text}"), *messages[1:])
    return (ChatMessage("system", text), *messages)


# --- forced calls: the opening markup and the schema of one call ----------------------------


@dataclass(frozen=True)
class ForcedCall:
    prefill: str
    """Markup put at the start of the reply (tokenized with control tokens parsed)."""
    schema: dict[str, Any]
    """The JSON schema of what the model writes after it."""


def forced_call(family: Family, tools: Sequence[ToolSpec], name: str,
                max_tokens: int = 1024) -> ForcedCall:
    """What a forced call looks like in ``family``: ``name`` the tool ("" for any).

    Free-text arguments are capped so that the call closes within ``max_tokens`` (at a token
    or more per character): a small model that forgets to close a string would otherwise run
    to the limit and leave a call that does not parse."""
    chosen = [t for t in tools if not name or t.name == name]
    args = {t.name: grammar_schema(_schema(t)) for t in chosen}
    for tool in chosen:
        n_strings = _count_strings(args[tool.name])
        if n_strings:
            skeleton = len(json.dumps(args[tool.name])) // 4 + len(tool.name) + 24
            cap = max(8, (max_tokens - skeleton) // n_strings)
            args[tool.name] = _cap_strings(args[tool.name], cap)

    def call(name_key: str, args_key: str) -> dict[str, Any]:
        options = [{"type": "object", "properties": {
            name_key: {"const": t.name}, args_key: args[t.name]},
            "required": [name_key, args_key]} for t in chosen]
        return options[0] if len(options) == 1 else {"anyOf": options}

    if family == "hermes":
        return ForcedCall("<tool_call>\n", call("name", "arguments"))
    if family == "llama3":
        return ForcedCall("", call("name", "parameters"))
    if family == "mistral":
        return ForcedCall("[TOOL_CALLS]", {"type": "array", "items": call("name", "arguments"),
                                          "minItems": 1, "maxItems": 1})
    if family == "harmony":
        if len(chosen) == 1:
            return ForcedCall(f"<|channel|>commentary to=functions.{chosen[0].name} "
                              "<|constrain|>json<|message|>", args[chosen[0].name])
        # several tools: the harmony header cannot be chosen under a JSON grammar, so the
        # call is written as one JSON object on the commentary channel
        return ForcedCall("<|channel|>commentary to=functions.call <|constrain|>json"
                          "<|message|>", call("name", "arguments"))
    return ForcedCall("", {"type": "object", "properties": {"tool_call": call(
        "name", "arguments")}, "required": ["tool_call"]})


def _free_string(node: dict[str, Any]) -> bool:
    return (node.get("type") == "string" and not any(
        k in node for k in ("enum", "const", "pattern", "format")))


def _count_strings(node: Any) -> int:
    if isinstance(node, list):
        return sum(_count_strings(n) for n in node)
    if not isinstance(node, dict):
        return 0
    return int(_free_string(node)) + sum(_count_strings(v) for v in node.values())


def _cap_strings(node: Any, cap: int) -> Any:
    if isinstance(node, list):
        return [_cap_strings(n, cap) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _cap_strings(v, cap) for k, v in node.items()}
    if _free_string(node):
        out["maxLength"] = min(int(node.get("maxLength", cap)), cap)
    return out


def grammar_schema(node: Any, depth: int = 0) -> Any:
    """A tool's schema with what constrained decoding cannot enforce left out (``minimum``,
    ``uniqueItems``...): the grammar then allows a little more than the schema, never less,
    and the tool checks its arguments itself."""
    if depth > 64 or isinstance(node, bool):
        return node if isinstance(node, bool) else {}
    if isinstance(node, list):
        return [grammar_schema(n, depth + 1) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS or key not in SUPPORTED:
            continue
        if key == "format" and value not in FORMATS:
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: grammar_schema(v, depth + 1) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf",
                     "prefixItems"):
            out[key] = grammar_schema(value, depth + 1)
        else:
            out[key] = value
    return out


# --- cutting calls out of a streamed reply ---------------------------------------------------


def _held(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


MARKERS: dict[Family, tuple[str, ...]] = {
    "hermes": ("<tool_call>", "</tool_call>"),
    "llama3": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"),
    "harmony": ("<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|constrain|>",
                "<|call|>"),
    "generic": (),
}
"""Control tokens the worker must render as text for the parser to see them."""


class ToolCallParser:
    """Feed a reply's text in pieces; get back the text that is not a call, and the calls as
    each one is complete. Text that looked like a call but does not parse is given back as
    text at the end, so nothing is lost."""

    def __init__(self, family: Family, names: Sequence[str]) -> None:
        self.family = family
        self.names = set(names)
        self.calls: list[ToolCall] = []
        self._buf = ""
        self._inside = False  # in a call's markup (or, for llama3/generic, a JSON reply)
        self._decided = family not in ("llama3", "generic")
        self._header = ""

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self._buf += text
        before = len(self.calls)
        if self.family == "hermes":
            out = self._hermes()
        elif self.family == "mistral":
            out = self._mistral()
        elif self.family == "harmony":
            out = self._harmony()
        else:
            out = self._json_reply()
        return out, self.calls[before:]

    def close(self) -> tuple[str, list[ToolCall]]:
        """The end of the reply: calls still open are parsed, the rest is text."""
        before = len(self.calls)
        rest, self._buf = self._buf, ""
        out = ""
        if self.family == "hermes":
            out = rest if not self._inside else self._parse_objects(rest, "<tool_call>")
        elif self.family == "mistral":
            out = self._parse_mistral(rest) if self._inside else rest
        elif self.family == "harmony":
            if self._inside:
                if not self._add(self._header_name(), rest.strip()):
                    out = self._header + "<|message|>" + rest
            else:
                out = rest
        else:
            out = self._parse_objects(rest, "") if self._inside else rest
        return out, self.calls[before:]

    # --- the families ----------------------------------------------------------------------

    def _hermes(self) -> str:
        out = []
        while self._buf:
            if not self._inside:
                at = self._buf.find("<tool_call>")
                if at < 0:
                    cut = len(self._buf) - _held(self._buf, "<tool_call>")
                    out.append(self._buf[:cut])
                    self._buf = self._buf[cut:]
                    break
                out.append(self._buf[:at].rstrip() if at else "")
                self._buf = self._buf[at + len("<tool_call>"):]
                self._inside = True
            else:
                at = self._buf.find("</tool_call>")
                if at < 0:
                    break
                body, self._buf = self._buf[:at], self._buf[at + len("</tool_call>"):]
                self._inside = False
                failed = self._parse_objects(body, "")
                if failed:
                    out.append(f"<tool_call>{body}</tool_call>")
                self._buf = self._buf.lstrip()
        return "".join(out)

    def _mistral(self) -> str:
        if self._inside:
            return ""
        at = self._buf.find("[TOOL_CALLS]")
        if at < 0:
            cut = len(self._buf) - _held(self._buf, "[TOOL_CALLS]")
            out, self._buf = self._buf[:cut], self._buf[cut:]
            return out
        out, self._buf = self._buf[:at].rstrip(), self._buf[at:]
        self._inside = True
        return out

    def _parse_mistral(self, text: str) -> str:
        """Calls after ``[TOOL_CALLS]``: a JSON array, or ``name[ARGS]{…}`` per call."""
        failed = []
        for raw in text.split("[TOOL_CALLS]")[1:]:
            chunk = raw.strip()
            if chunk.startswith("["):
                try:
                    items = json.loads(chunk)
                except ValueError:
                    items = None
                added = len(self.calls)
                if not (isinstance(items, list) and all(self._add_object(i) for i in items)):
                    del self.calls[added:]
                    failed.append(raw)
            elif "[ARGS]" in chunk:
                name, _marker, args = chunk.partition("[ARGS]")
                name = name.split("[CALL_ID]")[0].strip()
                if not self._add(name, args.strip()):
                    failed.append(raw)
            else:
                failed.append(raw)
        return "".join(f"[TOOL_CALLS]{c}" for c in failed)

    def _harmony(self) -> str:
        """Messages addressed to ``functions.NAME`` are calls; everything else passes on
        (to the reasoning splitter) as it came."""
        out = []
        while self._buf:
            if not self._inside and not self._header:
                # between messages: plain text passes until a header could begin
                at = self._buf.find("<|")
                if at < 0:
                    keep = 1 if self._buf.endswith("<") else 0
                    out.append(self._buf[:len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep:]
                    break
                out.append(self._buf[:at])
                self._buf = self._buf[at:]
                end = self._buf.find("<|message|>")
                if end < 0:
                    if len(self._buf) < 400 and "<|end|>" not in self._buf:
                        break  # a header still arriving
                    out.append(self._buf[:2])
                    self._buf = self._buf[2:]
                    continue
                header = self._buf[:end]
                if "to=functions." in header:
                    self._header, self._inside = header, True
                    self._buf = self._buf[end + len("<|message|>"):]
                else:
                    out.append(self._buf[:end + len("<|message|>")])
                    self._buf = self._buf[end + len("<|message|>"):]
                    self._header = "pass"
            elif self._inside:
                ends = [at for at in (self._buf.find(m) for m in ("<|call|>", "<|end|>"))
                        if at >= 0]
                if not ends:
                    break
                at = min(ends)
                body = self._buf[:at]
                marker = "<|call|>" if self._buf.startswith("<|call|>", at) else "<|end|>"
                self._buf = self._buf[at + len(marker):]
                if not self._add(self._header_name(), body.strip()):
                    out.append(self._header + "<|message|>" + body + marker)
                self._header, self._inside = "", False
            else:  # the body of a message that is not a call
                at = self._buf.find("<|end|>")
                if at < 0:
                    cut = len(self._buf) - _held(self._buf, "<|end|>")
                    out.append(self._buf[:cut])
                    self._buf = self._buf[cut:]
                    break
                out.append(self._buf[:at + len("<|end|>")])
                self._buf = self._buf[at + len("<|end|>"):]
                self._header = ""
        return "".join(out)

    def _header_name(self) -> str:
        match = re.search(r"to=functions\.([^\s<]+)", self._header)
        return match.group(1) if match else ""

    def _json_reply(self) -> str:
        """Llama 3.1+ and the generic format: a reply that starts with JSON (or
        ``<|python_tag|>``) is held whole and parsed at the end."""
        if self._decided:
            if self._inside:
                return ""
            out, self._buf = self._buf, ""
            return out
        head = self._buf.lstrip()
        if not head or "<|python_tag|>".startswith(head):
            return ""
        self._decided = True
        self._inside = head.startswith(("{", "[", "<|python_tag|>"))
        if self._inside:
            return ""
        out, self._buf = self._buf, ""
        return out

    # --- parsing ---------------------------------------------------------------------------

    def _parse_objects(self, text: str, opener: str) -> str:
        """Calls written as JSON objects one after another (separated by whitespace, ``;`` or
        further openers); the text back when any of it does not parse as a call."""
        body = text.replace("<|python_tag|>", " ")
        if opener:
            body = body.replace(opener, " ").replace(opener.replace("<", "</"), " ")
        decoder = json.JSONDecoder()
        found: list[Any] = []
        at = 0
        while True:
            while at < len(body) and (body[at].isspace() or body[at] in ";,"):
                at += 1
            if at >= len(body):
                break
            try:
                value, at = decoder.raw_decode(body, at)
            except ValueError:
                return (opener + text) if opener else text
            found.extend(value if isinstance(value, list) else [value])
        if not found:
            return (opener + text) if opener else text
        added = len(self.calls)
        if all(self._add_object(v) for v in found):
            return ""
        del self.calls[added:]
        if self.family == "generic" and len(found) == 1 and isinstance(found[0], dict) and (
                isinstance(found[0].get("response"), str)):
            return str(found[0]["response"])
        return (opener + text) if opener else text

    def _add_object(self, value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        if self.family == "generic":
            if isinstance(value.get("tool_call"), dict):
                value = value["tool_call"]
            elif isinstance(value.get("tool_calls"), list):
                return all(self._add_object(v) for v in value["tool_calls"])
        if isinstance(value.get("function"), dict):
            value = value["function"]
        name = value.get("name")
        args = value.get("arguments", value.get("parameters"))
        if not isinstance(name, str):
            return False
        if isinstance(args, str):
            text = args
        elif args is None:
            text = "{}"
        else:
            text = json.dumps(args, ensure_ascii=False)
        return self._add(name, text)

    def _add(self, name: str, arguments: str) -> bool:
        if self.family == "harmony" and name == "call" and "call" not in self.names:
            # the several-tools form of a forced harmony call: {"name", "arguments"} inside
            try:
                value = json.loads(arguments)
            except ValueError:
                return False
            return isinstance(value, dict) and self._add_object(value)
        if name not in self.names:
            return False
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return False
        if not isinstance(parsed, dict):
            return False
        self.calls.append(ToolCall(new_call_id(self.family), name,
                                   json.dumps(parsed, ensure_ascii=False)))
        return True
