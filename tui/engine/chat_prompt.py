"""Rendering a conversation with the model's Jinja chat template, markup apart from content.

Only the template's own markup may produce control tokens: a user who types ``<|im_end|>``
(or a knowledge-base passage, or an API client) must not open a system turn. So each
message's content is rendered as a unique placeholder, the output is cut at the placeholders,
and the caller tokenizes the markup with special tokens parsed and the content as plain text.
Pure Python on jinja2 (the worker's dependency through llama-cpp-python); no llama_cpp.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tui.engine.protocol import ChatMessage
from tui.engine.tool_calls import arguments_value
from tui.i18n import _

Segment = tuple[str, bool]
"""(text, is_markup): markup is tokenized with special tokens parsed, content as text."""


class TemplateError(Exception):
    """The chat template failed or refused the messages; the message is the template's own."""


@dataclass(frozen=True)
class RenderedPrompt:
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise TemplateError(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template and what it reads."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class _Generation(jinja2.ext.Extension):
            """Hugging Face's ``{% generation %}`` tag: pass its body through."""

            tags = {"generation"}  # noqa: RUF012 - jinja2's own class attribute

            def parse(self, parser: Any) -> Any:
                parser.stream.skip(1)
                return parser.parse_statements(("name:endgeneration",), drop_needle=True)

        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
            extensions=[_Generation, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(_("the chat template does not parse: {exc}", exc=exc)) from None
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.reads_reasoning = "reasoning_content" in source
        self.reads_enable_thinking = "enable_thinking" in source

    def _render(self, messages: list[dict[str, Any]], extra: dict[str, Any]) -> str:
        try:
            return str(self._template.render(
                messages=messages, bos_token=self.bos_token, eos_token=self.eos_token,
                add_generation_prompt=True, raise_exception=_raise_exception,
                strftime_now=_strftime_now, **extra,
            ))
        except TemplateError:
            raise
        except Exception as exc:  # jinja2 errors and the template's own type errors
            raise TemplateError(_("the chat template failed: {name}: {value}",
                                  name=type(exc).__name__, value=str(exc)[:160])) from None

    def message_dicts(self, messages: Sequence[ChatMessage], contents: Sequence[str]
                      ) -> list[dict[str, Any]]:
        out = []
        for m, content in zip(messages, contents, strict=True):
            item: dict[str, Any] = {"role": m.role, "content": content}
            if m.role == "assistant" and m.reasoning and self.reads_reasoning:
                item["reasoning_content"] = m.reasoning
            if m.tool_calls:  # only when there are some: templates test ``'tool_calls' in``
                item["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                    "name": c.name, "arguments": arguments_value(c.arguments)}}
                    for c in m.tool_calls]
            if m.tool_call_id is not None:
                item["tool_call_id"] = m.tool_call_id
            if m.name is not None:
                item["name"] = m.name
            out.append(item)
        return out

    def render(self, messages: Sequence[ChatMessage], *, extra: dict[str, Any] | None = None
               ) -> RenderedPrompt:
        """The prompt as segments of markup and content (see the module's doc)."""
        extra = extra or {}
        nonce = secrets.token_hex(6)
        # private-use characters: not whitespace (``| trim`` keeps them), never in real text
        marks = [f"\ue000lmdesk-{nonce}-{i}\ue001" if m.content else ""
                 for i, m in enumerate(messages)]
        # the spaces show whether the template trims the content (``| trim``)
        probe = [f" {mark} " if mark else "" for mark in marks]
        rendered = self._render(self.message_dicts(messages, probe), extra)
        found = {}
        for i, mark in enumerate(marks):
            if not mark:
                continue
            if rendered.count(mark) != 1:
                return self._fallback(messages, extra)
            found[i] = f" {mark} " in rendered
        segments: list[Segment] = []
        at = 0
        for pos, i in sorted((rendered.index(marks[i]), i) for i in found):
            if found[i]:  # the template kept the spaces: it does not trim, nor do we
                start, end, content = pos - 1, pos + len(marks[i]) + 1, messages[i].content
            else:
                start, end, content = pos, pos + len(marks[i]), messages[i].content.strip()
            if start > at:
                segments.append((rendered[at:start], True))
            if content:
                segments.append((content, False))
            at = end
        if at < len(rendered):
            segments.append((rendered[at:], True))
        return RenderedPrompt(tuple(segments))

    def _fallback(self, messages: Sequence[ChatMessage], extra: dict[str, Any]
                  ) -> RenderedPrompt:
        """A template that repeats or rewrites content: render it for real and mark each
        content where it appears verbatim, in order (rewritten content stays markup)."""
        rendered = self._render(self.message_dicts(messages, [m.content for m in messages]),
                                extra)
        segments: list[Segment] = []
        at = 0
        for m in messages:
            for content in dict.fromkeys((m.content, m.content.strip())):
                pos = rendered.find(content, at) if content else -1
                if pos >= 0:
                    break
            if pos < 0:
                continue
            if pos > at:
                segments.append((rendered[at:pos], True))
            segments.append((content, False))
            at = pos + len(content)
        if at < len(rendered):
            segments.append((rendered[at:], True))
        return RenderedPrompt(tuple(segments))


def continued(messages: Sequence[ChatMessage]) -> tuple[tuple[ChatMessage, ...], str]:
    """(the messages to render, the reply text to continue): a conversation that ends with an
    assistant message asks for more of that message, not for a new one (llama-server's
    assistant prefill); that is how a stopped or length-cut reply is continued."""
    if len(messages) > 1 and messages[-1].role == "assistant":
        return tuple(messages[:-1]), messages[-1].content
    return tuple(messages), ""


def plain_transcript(messages: Sequence[ChatMessage]) -> tuple[str, list[str]]:
    """A prompt for a base model (no chat template): the text itself, or a simple transcript."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content, []
    head, partial = continued(messages)
    lines = []
    for m in head:
        if m.role == "system":
            lines.append(m.content + "\n")
        else:
            lines.append(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}\n")
    lines.append(f"Assistant: {partial}" if partial else "Assistant:")
    return "".join(lines), ["\nUser:"]
