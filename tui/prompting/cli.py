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
from tui.prompting.builtin_templates import dumps_templates
from tui.prompting.memory import MemoryStore
from tui.prompting.templates import PromptingError, Template, TemplateError, TemplateLibrary
from tui.store import StoreError

if TYPE_CHECKING:
    from tui.store import Store



def add_templates_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                         ) -> argparse.ArgumentParser:
    p = sub.add_parser("templates", help="list, show, import and export prompt templates")
    s = p.add_subparsers(dest="templates_command", metavar="ACTION")
    ls = s.add_parser("list", help="all templates (built-in and yours)")
    ls.add_argument("--tag", help="only templates with this tag")
    ls.add_argument("--lang", help="only templates in this language (en, es...)")
    ls.add_argument("--search", help="words to look for in names, tags, titles and bodies")
    show = s.add_parser("show", help="a template's variables and body")
    show.add_argument("name")
    render = s.add_parser("render", help="print a template filled with --var key=value")
    render.add_argument("name")
    render.add_argument("--var", action="append", default=[], metavar="KEY=VALUE")
    imp = s.add_parser("import", help="add the templates in a JSON (or YAML) file")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="overwrite templates of that name")
    exp = s.add_parser("export", help="write templates to a file (or stdout) to share them")
    exp.add_argument("name", help="a template name, or several separated by commas")
    exp.add_argument("file", nargs="?", help="a .json or .yaml file (default: JSON on stdout)")
    rm = s.add_parser("rm", help="delete one of your templates")
    rm.add_argument("name")
    copy = s.add_parser("copy", help="duplicate a template (the way to edit a built-in one)")
    copy.add_argument("name")
    copy.add_argument("new_name", nargs="?")
    for action in (ls, show, render, imp, exp, rm, copy):
        action.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def add_memory_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                      ) -> argparse.ArgumentParser:
    p = sub.add_parser("memory", help="facts and preferences the model remembers about you")
    s = p.add_subparsers(dest="memory_command", metavar="ACTION")
    ls = s.add_parser("list", help="what is remembered")
    add = s.add_parser("add", help="remember something")
    add.add_argument("text", nargs="+")
    add.add_argument("--important", action="store_true", help="keep it when the budget is tight")
    rm = s.add_parser("rm", help="forget a memory (by id or a unique prefix of it)")
    rm.add_argument("id")
    on = s.add_parser("enable", help="use a memory again")
    on.add_argument("id")
    off = s.add_parser("disable", help="keep a memory but stop using it")
    off.add_argument("id")
    for action in (ls, add, rm, on, off):
        action.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` to a dict; the value may contain '=' and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TemplateError(f"--var expects key=value, got {pair!r}")
        if key in values:
            raise TemplateError(f"--var {key} is given twice", variable=key)
        values[key] = value
    return values


def render_for_ask(store: Store, name: str, vars: Sequence[str]) -> str:
    """The prompt for ``lmdesk ask --template NAME --var key=value ...``."""
    return TemplateLibrary(store).render(name, parse_vars(vars))


def _fail(message: object) -> int:
    print(f"lmdesk: error: {message}", file=sys.stderr)
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
        out.write(f"tags: {', '.join(t.tags)}\n")
    out.write("variables:\n" if t.variables else "variables: none\n")
    for v in t.variables:
        default = "required" if v.required else f"default: {v.default!r}"
        out.write(f"  {v.name:<14} {v.description} ({default})\n")
    out.write("\n" + t.body.rstrip("\n") + "\n")


def cmd_templates(args: argparse.Namespace, store: Store, out: TextIO | None = None) -> int:
    out = for_terminal(out if out is not None else sys.stdout)
    action = getattr(args, "templates_command", None) or "list"
    as_json = bool(getattr(args, "json", False))
    library = TemplateLibrary(store)
    try:
        if action == "list":
            found = library.list_templates(tag=getattr(args, "tag", None),
                                           lang=getattr(args, "lang", None),
                                           query=getattr(args, "search", None))
            if as_json:
                out.write(json.dumps([_summary(t) for t in found], ensure_ascii=False) + "\n")
            else:
                for t in found:
                    mark = " " if t.builtin else "*"
                    out.write(f"{mark}{t.name:<26} {t.lang:<3} {t.category:<12} {t.title}\n")
                if not found:
                    out.write("no templates match\n")
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
                _report(out, as_json, [t.name for t in done], f"exported to {args.file}:")
            else:
                out.write(dumps_templates([library.get(n) for n in names]))
        elif action == "rm":
            library.delete(args.name)
            _report(out, as_json, [args.name], "deleted")
        elif action == "copy":
            copy = library.duplicate(args.name, args.new_name)
            _report(out, as_json, [copy.name], f"copied {args.name} to")
        else:
            return _fail(f"unknown templates action {action!r}")
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
                when = datetime.fromtimestamp(m.created).strftime("%Y-%m-%d")
                star = "!" if m.important else " "
                out.write(f"{m.id}  {state} {when} {star} {m.text}\n")
            if not found and not as_json:
                out.write("nothing remembered yet: lmdesk memory add \"I prefer metric units\"\n")
            return 0
        if action == "add":
            memory = memories.add(" ".join(args.text), important=args.important)
        elif action == "rm":
            memory = memories.remove(args.id)
        elif action in ("enable", "disable"):
            memory = memories.set_enabled(args.id, action == "enable")
        else:
            return _fail(f"unknown memory action {action!r}")
    except (PromptingError, StoreError, OSError) as exc:
        return _fail(exc)
    if as_json:
        out.write(json.dumps({"result": action, **asdict(memory)}, ensure_ascii=False) + "\n")
    else:
        verb = {"add": "remembered", "rm": "forgot", "enable": "enabled",
                "disable": "disabled"}[action]
        out.write(f"{verb} {memory.id}: {memory.text}\n")
    return 0
