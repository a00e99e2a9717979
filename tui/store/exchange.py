"""Export (Markdown, JSON), import (JSON) and search snippets: pure functions, no files."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict
from typing import Any

from tui.display import count
from tui.i18n import _

from .errors import StoreError
from .models import (
    ROLES,
    STATUSES,
    ConversationMeta,
    StoredMessage,
    message_to_doc,
    new_id,
)
from .options import options_from_doc, options_from_legacy_extra, options_to_doc
from .parts import ReasoningPart, parts_from_docs
from .tree import ConversationTree

EXPORT_FORMAT = "lmdesk-conversation"
EXPORT_VERSION = 2
"""1: a list of messages in order. 2: every branch, each message with its ``parent``, and
``shown``, the last message of the branch shown. Both are read."""
_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def export_markdown(meta: ConversationMeta, messages: list[StoredMessage]) -> str:
    lines = [f"# {meta.title}", ""]
    about = [f"created {_iso(meta.created)}"]
    if meta.model:
        about.append(f"model {meta.model}")
    lines += [_("_Exported from lmdesk · {join}_", join=' · '.join(about)), ""]
    if meta.system_prompt:
        lines += [_("## System prompt"), "", meta.system_prompt, ""]
    for msg in messages:
        heading = msg.role.capitalize()
        if msg.role == "assistant" and msg.model and msg.model != meta.model:
            heading += f" ({msg.model})"
        lines += [f"## {heading}", ""]
        for part in msg.parts:
            if isinstance(part, ReasoningPart) and part.text:
                lines += [_("<details><summary>Reasoning ({tokens}, {seconds:.1f} s)</summary>",
                            tokens=count(part.tokens, "token"), seconds=part.seconds), "",
                          part.text.strip(), "", "</details>", ""]
        lines.append(close_fences(msg.content))
        if msg.status == "stopped":
            lines += ["", "_(stopped)_"]
        elif msg.status == "partial":
            lines += ["", "_(incomplete)_"]
        elif msg.status == "error":
            lines += ["", f"_(error: {msg.error or 'unknown'})_"]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def close_fences(text: str) -> str:
    """``text`` with a code fence left open (a stopped reply) closed, so what follows in the
    export is not swallowed into the code block."""
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        marker = next((m for m in ("```", "~~~") if stripped.startswith(m)), None)
        if marker is None:
            continue
        if fence is None:
            fence = marker
        elif marker == fence and stripped.strip() == marker:
            fence = None
    if fence is None:
        return text
    return text + ("" if text.endswith("\n") else "\n") + fence


def export_json(meta: ConversationMeta, tree: ConversationTree) -> dict[str, Any]:
    conversation = asdict(meta)
    conversation.pop("message_count", None)
    conversation["options"] = options_to_doc(meta.options)
    leaf = tree.leaf
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported": time.time(),
        "conversation": conversation,
        "messages": [message_to_doc(m) for m in tree.messages],
        "shown": leaf.id if leaf is not None else None,
    }


def _bad(why: str) -> StoreError:
    return StoreError(_("not an lmdesk conversation export: {why}", why=why))


def _number(value: Any, default: float, what: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(_("{what} should be a number of seconds, got {value!r}", what=what, value=value))
    return float(value)


def _opt_str(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _bad(_("{what} should be text, got {value!r}", what=what, value=value))
    return value


def parse_import(data: Any) -> tuple[dict[str, Any], list[StoredMessage], str | None]:
    """Check an export; return the conversation's fields, its messages (ids kept if sane,
    parents checked) and the message whose branch is shown."""
    if not isinstance(data, dict):
        raise _bad(_("expected a JSON object"))
    if data.get("format") != EXPORT_FORMAT:
        raise _bad(_("format is {get!r}, expected {EXPORT_FORMAT!r}",
                     get=data.get('format'), EXPORT_FORMAT=EXPORT_FORMAT))
    version = data.get("version")
    if not isinstance(version, int) or not 1 <= version <= EXPORT_VERSION:
        raise _bad(_("unsupported version {version!r} (this lmdesk reads {EXPORT_VERSION})",
                     version=version, EXPORT_VERSION=EXPORT_VERSION))
    conv = data.get("conversation")
    if not isinstance(conv, dict):
        raise _bad(_("'conversation' is missing or not an object"))
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise _bad(_("'messages' is missing or not a list"))
    now = time.time()
    title = conv.get("title", "Imported conversation")
    if not isinstance(title, str):
        raise _bad(_("the title should be text"))
    options = conv.get("options")
    if options is None:  # an export from lmdesk 0.1
        extra = conv.get("extra", {})
        if not isinstance(extra, dict):
            raise _bad(_("'extra' should be an object"))
        options, _rest = options_from_legacy_extra(extra)
    if not isinstance(options, dict):
        raise _bad(_("'options' should be an object"))
    created = _number(conv.get("created"), now, "created")
    fields: dict[str, Any] = {
        "title": title,
        "created": created,
        "updated": _number(conv.get("updated"), created, "updated"),
        "pinned": bool(conv.get("pinned", False)),
        "system_prompt": _opt_str(conv.get("system_prompt"), "system_prompt") or "",
        "model": _opt_str(conv.get("model"), "model"),
        "options": options_to_doc(options_from_doc(options)[0]),
    }
    messages: list[StoredMessage] = []
    seen: set[str] = set()
    renamed: dict[str, str] = {}
    previous: str | None = None
    for n, raw in enumerate(raw_messages, 1):
        where = f"message {n}"
        if not isinstance(raw, dict):
            raise _bad(_("{where} is not an object", where=where))
        role, content = raw.get("role"), raw.get("content")
        if role not in ROLES:
            raise _bad(_("{where} has an unknown role {role!r}", where=where, role=role))
        if not isinstance(content, str):
            raise _bad(_("{where} has no text content", where=where))
        status = raw.get("status", "done")
        if status not in STATUSES:
            raise _bad(_("{where} has an unknown status {status!r}", where=where, status=status))
        stats = raw.get("stats")
        if stats is not None and not isinstance(stats, dict):
            raise _bad(_("{where}: 'stats' should be an object", where=where))
        original = raw.get("id")
        mid = original
        if not isinstance(mid, str) or not _ID_OK.match(mid) or mid in seen:
            mid = new_id("m")
        if isinstance(original, str):
            renamed.setdefault(original, mid)
        seen.add(mid)
        if "parent" not in raw:  # version 1: each message follows the one before
            parent = previous
        elif raw["parent"] is None:
            parent = None
        elif isinstance(raw["parent"], str) and raw["parent"] in renamed \
                and renamed[raw["parent"]] != mid:
            parent = renamed[raw["parent"]]
        else:
            raise _bad(_("{where}'s parent {parent!r} is not an earlier message",
                         where=where, parent=raw['parent']))
        previous = mid
        messages.append(
            StoredMessage(
                id=mid,
                role=role,
                content=content,
                created=_number(raw.get("created"), now, f"{where} created"),
                model=_opt_str(raw.get("model"), f"{where} model"),
                stats=stats,
                status=status,
                error=_opt_str(raw.get("error"), f"{where} error"),
                parts=parts_from_docs(raw.get("parts")),
                parent=parent,
            )
        )
    shown = data.get("shown")
    return fields, messages, renamed.get(shown) if isinstance(shown, str) else None


def snippet(text: str, start: int, end: int, width: int = 80) -> str:
    """The match with some context around it, on one line, ellipses where cut."""
    before = max(0, start - width // 3)
    after = min(len(text), end + width - (end - start) - (start - before))
    after = max(after, end)
    piece = " ".join(text[before:after].split())
    if before > 0:
        piece = "…" + piece
    if after < len(text):
        piece += "…"
    return piece
