"""``lmdesk chats ...``: the stored conversations from the shell.

``list``, ``show`` (the branch shown, or ``--tree`` for every branch), ``export`` (Markdown:
the branch shown; JSON: the whole tree, which ``import`` reads back, as it reads the first
export format) and ``rm``. An id may be given by its start when that is unique. Adding a turn
to a conversation is ``lmdesk ask --chat ID`` (``tui.session.ask``).

``tui/cli.py`` adds the parser with ``add_chats_parser`` and calls ``cmd_chats`` with an open
store (read-only when the app holds the data folder: then ``import`` and ``rm`` refuse in one
line). No engine here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from tui.i18n import N_, _, format_datetime

from .errors import StoreError
from .models import ConversationMeta, StoredMessage, message_to_doc
from .options import options_to_doc
from .store import Store
from .tree import ConversationTree

WRITES = frozenset({"import", "rm"})
"""The actions that change the data folder."""
PREVIEW = 60
ROLE_NAMES = {"user": N_("you"), "assistant": N_("assistant"), "system": N_("system")}


def add_chats_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                     ) -> argparse.ArgumentParser:
    p = sub.add_parser("chats", help=_("list, show, export, import and remove conversations"))
    s = p.add_subparsers(dest="chats_command", metavar="ACTION")
    ls = s.add_parser("list", help=_("every conversation, pinned first, then the newest"))
    show = s.add_parser("show", help=_("a conversation: the branch shown, or --tree for all"))
    show.add_argument("id", help=_("a conversation id, or its start"))
    show.add_argument("--tree", action="store_true", help=_("every branch (* marks the shown)"))
    exp = s.add_parser("export", help=_("write a conversation as Markdown or JSON"))
    exp.add_argument("id")
    exp.add_argument("--format", choices=("md", "json"), default="md",
                     help=_("md: the branch shown; json: every branch (importable)"))
    exp.add_argument("-o", "--output", metavar="FILE", help=_("write here (default: stdout)"))
    imp = s.add_parser("import", help=_("add a conversation from a JSON export"))
    imp.add_argument("file")
    rm = s.add_parser("rm", help=_("delete a conversation and all its messages"))
    rm.add_argument("id")
    for action in (ls, show, imp, rm):
        action.add_argument("--json", action="store_true", help=_("machine-readable output"))
    return p


class ChatsError(Exception):
    """One line for ``lmdesk: error: ...``."""


def cmd_chats(args: argparse.Namespace, store: Store, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    action = getattr(args, "chats_command", None) or "list"
    as_json = bool(getattr(args, "json", False))
    if action in WRITES and store.read_only:
        raise ChatsError(store.read_only_reason)
    try:
        if action == "list":
            _list(store, out, as_json)
        elif action == "show":
            meta = _find(store, args.id)
            _show(meta, store.tree(meta.id), out, as_json=as_json, tree=args.tree)
        elif action == "export":
            _export(store, _find(store, args.id), args.format, args.output, out)
        elif action == "import":
            meta = store.import_json(_read_export(Path(args.file)))
            _said(out, as_json, "imported", meta)
        elif action == "rm":
            meta = _find(store, args.id)
            store.delete_conversation(meta.id)
            _said(out, as_json, "deleted", meta)
        else:
            raise ChatsError(_("unknown chats action {action!r}", action=action))
    except StoreError as exc:
        raise ChatsError(str(exc)) from None
    return 0


def _find(store: Store, ref: str) -> ConversationMeta:
    try:
        return store.find_conversation(ref)
    except StoreError as exc:
        raise ChatsError(_("{exc} (see `lmdesk chats list`)", exc=exc)) from None


def _when(ts: float) -> str:
    """The local date and time in the locale's short form (``2026-12-01 23:24`` in English)."""
    from datetime import datetime

    return format_datetime(datetime.fromtimestamp(ts))


def _meta_doc(meta: ConversationMeta) -> dict[str, Any]:
    doc = asdict(meta)
    doc["options"] = options_to_doc(meta.options)
    return doc


def _list(store: Store, out: TextIO, as_json: bool) -> None:
    metas = store.list_conversations()
    if as_json:
        out.write(json.dumps([_meta_doc(m) for m in metas], ensure_ascii=False) + "\n")
        return
    if not metas:
        out.write(_("no conversations yet: start one in the app, or `lmdesk chats import FILE`\n"))
        return
    for m in metas:
        pin = "*" if m.pinned else " "
        out.write(_("{id}  {when} {message_count:>5} msgs {pin} {title}\n",
                    id=m.id, when=_when(m.updated), message_count=m.message_count, pin=pin,
                    title=m.title))


def _one_line(text: str, width: int = PREVIEW) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _show(meta: ConversationMeta, conv: ConversationTree, out: TextIO, *, as_json: bool,
          tree: bool) -> None:
    branch = conv.branch
    if as_json:
        doc: dict[str, Any] = {
            "conversation": _meta_doc(meta),
            "messages": [message_to_doc(m) for m in (conv.messages if tree else branch)],
        }
        if tree:
            doc["shown"] = [m.id for m in branch]
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    out.write(_("# {title}\n{id} · {message_count} messages · updated {when}\n",
                title=meta.title, id=meta.id, message_count=meta.message_count,
                when=_when(meta.updated)))
    if meta.system_prompt:
        out.write(_("system: {one_line}\n", one_line=_one_line(meta.system_prompt)))
    if tree:
        _print_tree(conv, {m.id for m in branch}, out)
        return
    for m in branch:
        n, count = conv.position(m.id)
        version = f" ({n}/{count})" if count > 1 else ""
        status = "" if m.status == "done" else f" [{m.status}]"
        role = _(ROLE_NAMES.get(m.role, m.role))
        out.write(f"\n{role}{version}{status}:\n")
        out.write(m.content.rstrip("\n") + "\n")


def _print_tree(conv: ConversationTree, shown: set[str], out: TextIO) -> None:
    """One line per message; a reply or prompt with other versions is indented under its
    parent with them, a plain follow-up stays in line; * marks the branch shown."""
    stack: list[tuple[StoredMessage, int]] = [
        (m, 1 if len(conv.children(None)) > 1 else 0) for m in reversed(conv.children(None))]
    while stack:
        m, depth = stack.pop()
        n, count = conv.position(m.id)
        version = f" [{n}/{count}]" if count > 1 else ""
        mark = "*" if m.id in shown else " "
        role = _(ROLE_NAMES.get(m.role, m.role))
        out.write(f"{mark} {'  ' * depth}{m.id} {role}{version}: "
                  f"{_one_line(m.content)}\n")
        children = conv.children(m.id)
        step = 1 if len(children) > 1 else 0
        stack.extend((c, depth + step) for c in reversed(children))


def _export(store: Store, meta: ConversationMeta, fmt: str, output: str | None,
            out: TextIO) -> None:
    if fmt == "json":
        text = json.dumps(store.export_json(meta.id), indent=2, ensure_ascii=False) + "\n"
    else:
        text = store.export_markdown(meta.id)
    if output is None:
        out.write(text)
        return
    path = Path(output).expanduser()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ChatsError(_("cannot write {path} ({strerror})",
                           path=path, strerror=exc.strerror)) from None
    out.write(_("exported “{title}” to {path}\n", title=meta.title, path=path))


def _read_export(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChatsError(_("cannot read {path} ({strerror})",
                           path=path, strerror=exc.strerror)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChatsError(_("{path} is not a JSON export ({exc})", path=path, exc=exc)) from None
    if not isinstance(data, dict):
        raise ChatsError(_("{path} is not a conversation export (expected a JSON object)",
                           path=path))
    return data


def _said(out: TextIO, as_json: bool, verb: str, meta: ConversationMeta) -> None:
    if as_json:
        out.write(json.dumps({"result": verb, **_meta_doc(meta)}, ensure_ascii=False) + "\n")
    else:
        out.write(_("{verb} {id}: {title} ({message_count} messages)\n",
                    verb=verb, id=meta.id, title=meta.title, message_count=meta.message_count))
