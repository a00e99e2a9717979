"""Reading one streamed reply (server-sent events) from an OpenAI-compatible server.

Every way a reply can end becomes one ``Done``: the server's ``[DONE]`` (or a finish reason
and the end of the body), a cancel (we closed the connection), an error event, an error
status, a timeout, or the connection dropping mid-reply. Text received before a failure is
kept in the ``Done``.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tui.display import count
from tui.engine.errors import ToolsUnsupported
from tui.engine.protocol import (
    Done,
    EngineEvent,
    GenerationStats,
    ReasoningDelta,
    StopReason,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)
from tui.engine.reasoning import ReasoningSplitter
from tui.i18n import _

if TYPE_CHECKING:
    from tui.engine.remote import RemoteEngine

EXTRAS = ("top_k", "min_p", "repeat_penalty")
"""Sampling fields beyond OpenAI's; llama-server and lmdesk take them, strict servers refuse."""


class Tally:
    """What the client saw of one reply: when it started, its first and last text."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.thought: list[str] = []
        self.reasoning_chunks = 0
        self.reasoning_last: float | None = None
        self.logprobs: list[TokenLogprob] = []
        self.splitter = ReasoningSplitter()
        """``<think>`` inside ``content``, for servers that do not split it themselves."""
        self.calls: dict[int, list[str]] = {}
        """Tool calls by index: [id, name, arguments so far], assembled from the deltas."""

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(i or f"call_{n}", name, args or "{}")
                     for n, (i, name, args) in sorted(self.calls.items()) if name)

    def text(self) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.chunks += 1

    def reasoning(self) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.reasoning_last = now
        self.reasoning_chunks += 1

    def server_figures(self, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]


def _num(source: object, key: str) -> float:
    value = source.get(key) if isinstance(source, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def finish(
    rid: int, parts: list[str], tally: Tally, reason: StopReason, error: str | None = None
) -> Done:
    """The closing event, with client-side timing and whatever the server reported."""
    usage, timings = tally.usage, tally.timings
    generated = int(_num(usage, "completion_tokens")) or tally.chunks + tally.reasoning_chunks
    reasoning_tokens = int(_num(usage.get("completion_tokens_details"), "reasoning_tokens")
                           ) or tally.reasoning_chunks
    first, last = tally.first, tally.last
    if first is not None and last is not None and last > first and generated > 1:
        rate = (generated - 1) / (last - first)
    else:
        rate = _num(timings, "predicted_per_second")
    reused = int(_num(timings, "cache_n")) or int(
        _num(usage.get("prompt_tokens_details"), "cached_tokens")
    )
    prompt = int(_num(usage, "prompt_tokens")) or int(_num(timings, "prompt_n")) + reused
    stats = GenerationStats(
        prompt_tokens=prompt,
        prompt_tokens_per_s=_num(timings, "prompt_per_second"),
        generated_tokens=generated,
        generation_tokens_per_s=rate,
        time_to_first_token_s=(first - tally.start) if first is not None else 0.0,
        reused_tokens=reused,
        evaluated_prompt_tokens=int(_num(timings, "prompt_n")) or max(prompt - reused, 0),
        stop_reason=reason,
        total_seconds=time.perf_counter() - tally.start,
        reasoning_tokens=reasoning_tokens,
        reasoning_seconds=(tally.reasoning_last - first) if (
            tally.reasoning_last is not None and first is not None) else 0.0,
    )
    calls = tally.tool_calls()
    if calls and reason in ("stop", "length"):
        stats = dataclasses.replace(stats, stop_reason="tool_calls")
    return Done(rid, "".join(parts), stats, error, reasoning="".join(tally.thought),
                tool_calls=calls, logprobs=tuple(tally.logprobs))


def sse_payloads(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    """The ``data`` of each server-sent event, until the body ends."""
    data: list[bytes] = []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield b"\n".join(data)
                data = []
            continue
        name, _colon, value = line.partition(b":")
        if name == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data)


def _fields(choice: object) -> tuple[str, str]:
    """(answer text, reasoning text) of one streamed choice (or a whole message)."""
    if not isinstance(choice, dict):
        return "", ""
    holder = choice.get("delta") or choice.get("message")
    if not isinstance(holder, dict):
        text = choice.get("text")
        return (text if isinstance(text, str) else ""), ""
    text = holder.get("content")
    thought = holder.get("reasoning_content") or holder.get("reasoning")
    return (text if isinstance(text, str) else ""), (
        thought if isinstance(thought, str) else "")


def _tool_calls(rid: int, choice: object, tally: Tally) -> Iterator[ToolCallDelta]:
    """The pieces of tool calls in one streamed choice (or a whole message), added to the
    tally: the first piece of an index brings its id and name, later ones more arguments."""
    holder = choice.get("delta") or choice.get("message") if isinstance(choice, dict) else None
    items = holder.get("tool_calls") if isinstance(holder, dict) else None
    for position, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        function = item.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = _text(item.get("id"))
        name = _text(function.get("name"))
        raw = function.get("arguments")
        # a server that sends the object itself instead of its JSON text
        args = json.dumps(raw) if isinstance(raw, dict) else _text(raw)
        entry = tally.calls.setdefault(index, ["", "", ""])
        entry[0] = entry[0] or call_id
        entry[1] = entry[1] or name
        entry[2] += args
        if call_id or name or args:
            yield ToolCallDelta(rid, index, call_id, name, args)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _logprobs(choice: object) -> list[TokenLogprob]:
    """OpenAI's ``logprobs.content`` (chat) of one choice."""
    block = choice.get("logprobs") if isinstance(choice, dict) else None
    items = block.get("content") if isinstance(block, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            continue
        top = tuple((str(t.get("token", "")), _num(t, "logprob"))
                    for t in item.get("top_logprobs") or [] if isinstance(t, dict))
        out.append(TokenLogprob(item["token"], _num(item, "logprob"), top))
    return out


def _route(rid: int, pieces: Sequence[tuple[str, str]], parts: list[str], tally: Tally
           ) -> Iterator[EngineEvent]:
    for part, text in pieces:
        if part == "reasoning":
            tally.reasoning()
            tally.thought.append(text)
            yield ReasoningDelta(rid, text)
        else:
            tally.text()
            parts.append(text)
            yield TextDelta(rid, text)


def _close(rid: int, parts: list[str], tally: Tally, reason: StopReason,
           error: str | None = None) -> Iterator[EngineEvent]:
    """Release what the ``<think>`` splitter held, then the closing event."""
    yield from _route(rid, tally.splitter.close(), parts, tally)
    yield finish(rid, parts, tally, reason, error)


def _send(
    engine: RemoteEngine, path: str, body: dict[str, Any]
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = engine._open()
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=engine._headers())
        return conn, conn.getresponse()
    except BaseException:
        engine._close(conn)
        raise


def stream_reply(
    engine: RemoteEngine, rid: int, path: str, body: dict[str, Any]
) -> Iterator[EngineEvent]:
    tally = Tally(time.perf_counter())
    parts: list[str] = []
    conn: http.client.HTTPConnection | None = None
    answered = False  # the server sent a status line for the request in force
    finish_reason: str | None = None
    ended = False
    try:
        conn, resp = _send(engine, path, body)
        answered = True
        if resp.status == 400 and any(k in body for k in EXTRAS):
            raw = resp.read()
            if not any(k.encode() in raw for k in EXTRAS):
                _refuses_tools(engine, body, raw)
                yield from _close(rid, parts, tally, "error", engine._status_error(400, raw))
                return
            engine._close(conn)  # a strict server: ask again without them, and remember
            answered, conn = False, None
            body = {k: v for k, v in body.items() if k not in EXTRAS}
            conn, resp = _send(engine, path, body)
            answered = True
            engine._send_extras = resp.status != 200
        if resp.status != 200:
            raw = resp.read()
            if resp.status == 400:
                _refuses_tools(engine, body, raw)
            yield from _close(rid, parts, tally, "error", engine._status_error(resp.status, raw))
            return
        if "text/event-stream" in (resp.getheader("Content-Type") or ""):
            payloads: Iterator[bytes] = sse_payloads(resp)
        else:  # a server that ignored "stream": the whole answer at once
            payloads = iter([resp.read()])
        for payload in payloads:
            if payload.strip() == b"[DONE]":
                ended = True
                break
            obj = json.loads(payload)
            if not isinstance(obj, dict):
                continue
            if obj.get("error"):
                error = obj["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                yield from _close(rid, parts, tally, "error", f"{engine.server}: {message}")
                return
            tally.server_figures(obj)
            for choice in obj.get("choices") or []:
                text, thought = _fields(choice)
                if thought:
                    yield from _route(rid, [("reasoning", thought)], parts, tally)
                if text:
                    yield from _route(rid, tally.splitter.feed(text), parts, tally)
                yield from _tool_calls(rid, choice, tally)
                tally.logprobs += _logprobs(choice)
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if engine._cancel.is_set():
            yield from _close(rid, parts, tally, "cancelled")
        elif isinstance(exc, ValueError):
            yield from _close(rid, parts, tally, "error", _("{server} sent a malformed event",
                                                            server=engine.server))
        elif isinstance(exc, TimeoutError) or not answered:
            yield from _close(rid, parts, tally, "error", engine._describe(exc) + _after(tally))
        else:
            yield from _close(rid, parts, tally, "error", _dropped(engine, tally, exc))
        return
    finally:
        if conn is not None:
            engine._close(conn)
    if engine._cancel.is_set():
        yield from _close(rid, parts, tally, "cancelled")
    elif ended or finish_reason is not None:
        reason: StopReason = "length" if finish_reason == "length" else "stop"
        yield from _close(rid, parts, tally, reason)
    else:
        yield from _close(rid, parts, tally, "error", _dropped(engine, tally, None))


def _refuses_tools(engine: RemoteEngine, body: dict[str, Any], raw: bytes) -> None:
    """A server that refuses the tools themselves (an older lmdesk, a server without tool
    support): EngineError, so the turn goes on without them and says so."""
    if "tools" in body and b"tool" in raw.lower():
        raise ToolsUnsupported(_("{error} (this server cannot call tools)",
                                 error=engine._status_error(400, raw)))


def _after(tally: Tally) -> str:
    return f" (after {count(tally.chunks, 'token')})" if tally.chunks else ""


def _dropped(engine: RemoteEngine, tally: Tally, exc: BaseException | None) -> str:
    why = f" ({exc.__class__.__name__})" if exc is not None else ""
    return _("the stream from {server} dropped after {count}{why}",
             server=engine.server, count=count(tally.chunks, 'token'), why=why)
