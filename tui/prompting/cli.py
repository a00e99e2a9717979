"""``lmdesk templates ...`` and ``lmdesk memory ...``: the library and memory for scripts.

``tui/cli.py`` adds the parsers with ``add_templates_parser``/``add_memory_parser`` and calls
``cmd_templates``/``cmd_memory`` with an open store; ``render_for_ask`` fills a template for
``lmdesk ask --template NAME --var key=value``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tui.display import for_terminal
from tui.i18n import _, current_language, format_date
from tui.prompting.builtin_templates import dumps_templates
from tui.prompting.memory import MemoryStore
from tui.prompting.templates import PromptingError, Template, TemplateError, TemplateLibrary
from tui.store import StoreError

if TYPE_CHECKING:
    from tui.store import Store



def add_templates_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                         ) -> argparse.ArgumentParser:
    p = sub.add_parser("templates", help=_("list, show, import and export prompt templates"))
    s = p.add_subparsers(dest="templates_command", metavar="ACTION")
    ls = s.add_parser("list", help=_("all templates (built-in and yours)"))
    ls.add_argument("--tag", help=_("only templates with this tag"))
    ls.add_argument("--lang", help=_("only templates in this language (en, es...; all: every "
                                     "one; default: Spanish ones when lmdesk speaks Spanish)"))
    ls.add_argument("--search", help=_("words to look for in names, tags, titles and bodies"))
    show = s.add_parser("show", help=_("a template's variables and body"))
    show.add_argument("name")
    render = s.add_parser("render", help=_("print a template filled with --var key=value"))
    render.add_argument("name")
    render.add_argument("--var", action="append", default=[], metavar="KEY=VALUE")
    imp = s.add_parser("import", help=_("add the templates in a JSON (or YAML) file"))
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help=_("overwrite templates of that name"))
    exp = s.add_parser("export", help=_("write templates to a file (or stdout) to share them"))
    exp.add_argument("name", help=_("a template name, or several separated by commas"))
    exp.add_argument("file", nargs="?", help=_("a .json or .yaml file (default: JSON on stdout)"))
    rm = s.add_parser("rm", help=_("delete one of your templates"))
    rm.add_argument("name")
    copy = s.add_parser("copy", help=_("duplicate a template (the way to edit a built-in one)"))
    copy.add_argument("name")
    copy.add_argument("new_name", nargs="?")
    for action in (ls, show, render, imp, exp, rm, copy):
        action.add_argument("--json", action="store_true", help=_("machine-readable output"))
    return p


def add_memory_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                      ) -> argparse.ArgumentParser:
    p = sub.add_parser("memory", help=_("facts and preferences the model remembers about you"))
    s = p.add_subparsers(dest="memory_command", metavar="ACTION")
    ls = s.add_parser("list", help=_("what is remembered"))
    add = s.add_parser("add", help=_("remember something"))
    add.add_argument("text", nargs="+")
    add.add_argument("--important", action="store_true", help=_("keep it when the budget is tight"))
    rm = s.add_parser("rm", help=_("forget a memory (by id or a unique prefix of it)"))
    rm.add_argument("id")
    on = s.add_parser("enable", help=_("use a memory again"))
    on.add_argument("id")
    off = s.add_parser("disable", help=_("keep a memory but stop using it"))
    off.add_argument("id")
    for action in (ls, add, rm, on, off):
        action.add_argument("--json", action="store_true", help=_("machine-readable output"))
    return p


def parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` to a dict; the value may contain '=' and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TemplateError(_("--var expects key=value, got {pair!r}", pair=pair))
        if key in values:
            raise TemplateError(_("--var {key} is given twice", key=key), variable=key)
        values[key] = value
    return values


def render_for_ask(store: Store, name: str, vars: Sequence[str]) -> str:
    """The prompt for ``lmdesk ask --template NAME --var key=value ...``."""
    return TemplateLibrary(store).render(name, parse_vars(vars))


def _fail(message: object) -> int:
    print(_("lmdesk: error: {message}", message=message), file=sys.stderr)
    return 1


def _summary(t: Template) -> dict[str, Any]:
    return {"name": t.name, "title": t.title, "lang": t.lang, "category": t.category,
            "tags": list(t.tags), "builtin": t.builtin,
            "variables": [v.name for v in t.variables]}


def _print_template(t: Template, out: TextIO) -> None:
    kind = "built-in" if t.builtin else "yours"
    out.write(f"{t.name} — {t.title} ({t.lang}, {kind})\n")
    if t.description:
        out.write(f"{t.description}\n")
    if t.tags:
        out.write(_("tags: {join}\n", join=', '.join(t.tags)))
    out.write("variables:\n" if t.variables else _("variables: none\n"))
    for v in t.variables:
        default = "required" if v.required else f"default: {v.default!r}"
        out.write(f"  {v.name:<14} {v.description} ({default})\n")
    out.write("\n" + t.body.rstrip("\n") + "\n")


def _listed_language(args: argparse.Namespace) -> str | None:
    """--lang, else Spanish when lmdesk speaks Spanish (the built-ins exist in both), else
    every language; ``--lang all`` lists every one."""
    lang = getattr(args, "lang", None)
    if lang == "all":
        return None
    if lang is None and current_language().code != "en":
        return current_language().code
    return lang


def cmd_templates(args: argparse.Namespace, store: Store, out: TextIO | None = None) -> int:
    out = for_terminal(out if out is not None else sys.stdout)
    action = getattr(args, "templates_command", None) or "list"
    as_json = bool(getattr(args, "json", False))
    library = TemplateLibrary(store)
    try:
        if action == "list":
            found = library.list_templates(tag=getattr(args, "tag", None),
                                           lang=_listed_language(args),
                                           query=getattr(args, "search", None))
            if as_json:
                out.write(json.dumps([_summary(t) for t in found], ensure_ascii=False) + "\n")
            else:
                for t in found:
                    mark = " " if t.builtin else "*"
                    out.write(f"{mark}{t.name:<26} {t.lang:<3} {t.category:<12} {t.title}\n")
                if not found:
                    out.write(_("no templates match\n"))
        elif action == "show":
            t = library.get(args.name)
            if as_json:
                out.write(json.dumps({**t.to_dict(), "builtin": t.builtin},
                                     ensure_ascii=False) + "\n")
            else:
                _print_template(t, out)
        elif action == "render":
            text = library.render(args.name, parse_vars(args.var))
            out.write(json.dumps({"prompt": text}, ensure_ascii=False) + "\n" if as_json
                      else text.rstrip("\n") + "\n")
        elif action == "import":
            added = library.import_file(args.file, replace_existing=args.replace)
            _report(out, as_json, [t.name for t in added], "imported")
        elif action == "export":
            names = [n.strip() for n in args.name.split(",") if n.strip()]
            if args.file:
                done = library.export_file(names, Path(args.file))
                _report(out, as_json, [t.name for t in done], _("exported to {file}:",
                                                                file=args.file))
            else:
                out.write(dumps_templates([library.get(n) for n in names]))
        elif action == "rm":
            library.delete(args.name)
            _report(out, as_json, [args.name], "deleted")
        elif action == "copy":
            copy = library.duplicate(args.name, args.new_name)
            _report(out, as_json, [copy.name], _("copied {name} to", name=args.name))
        else:
            return _fail(_("unknown templates action {action!r}", action=action))
    except (PromptingError, StoreError, OSError) as exc:
        return _fail(exc)
    return 0


def _report(out: TextIO, as_json: bool, names: list[str], verb: str) -> None:
    if as_json:
        out.write(json.dumps({"result": verb.split()[0], "names": names}) + "\n")
    else:
        out.write(f"{verb} {', '.join(names) if names else 'nothing'}\n")


def cmd_memory(args: argparse.Namespace, store: Store, out: TextIO | None = None) -> int:
    out = for_terminal(out if out is not None else sys.stdout)
    action = getattr(args, "memory_command", None) or "list"
    as_json = bool(getattr(args, "json", False))
    memories = MemoryStore(store)
    try:
        if action == "list":
            found = memories.list_memories()
            if as_json:
                out.write(json.dumps([asdict(m) for m in found], ensure_ascii=False) + "\n")
            for m in [] if as_json else found:
                state = "on " if m.enabled else "off"
                when = format_date(datetime.fromtimestamp(m.created))
                star = "!" if m.important else " "
                out.write(f"{m.id}  {state} {when} {star} {m.text}\n")
            if not found and not as_json:
                out.write(_('nothing remembered yet: lmdesk memory add "I prefer metric units"\n'))
            return 0
        if action == "add":
            memory = memories.add(" ".join(args.text), important=args.important)
        elif action == "rm":
            memory = memories.remove(args.id)
        elif action in ("enable", "disable"):
            memory = memories.set_enabled(args.id, action == "enable")
        else:
            return _fail(_("unknown memory action {action!r}", action=action))
    except (PromptingError, StoreError, OSError) as exc:
        return _fail(exc)
    if as_json:
        out.write(json.dumps({"result": action, **asdict(memory)}, ensure_ascii=False) + "\n")
    else:
        verb = {"add": "remembered", "rm": "forgot", "enable": "enabled",
                "disable": "disabled"}[action]
        out.write(f"{verb} {memory.id}: {memory.text}\n")
    return 0
