"""``lmdesk kb add|list|search|rm|reindex``: knowledge bases from the command line.

``tui/cli.py`` adds the parser with ``add_kb_parser(sub)`` and dispatches to
``cmd_kb(args, settings, paths)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, TextIO

from tui.display import count, for_terminal, printable
from tui.i18n import _
from tui.kb.ingest import IngestReport, Progress, ProgressFn
from tui.kb.kb import KBError, KBLibrary

if TYPE_CHECKING:
    from tui.config import Paths, Settings


def add_kb_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                  ) -> argparse.ArgumentParser:
    p = sub.add_parser("kb", help=_("knowledge bases: folders indexed for answers with sources"))
    s = p.add_subparsers(dest="kb_command", metavar="ACTION")
    add = s.add_parser("add", help=_("create NAME (or add paths to it) and index the paths"))
    add.add_argument("name")
    add.add_argument("paths", nargs="+", metavar="PATH")
    re_ = s.add_parser("reindex", help=_("bring NAME up to date with its files"))
    re_.add_argument("name")
    for indexing in (add, re_):
        indexing.add_argument("--max-mb", type=_size_mib, default=20.0,
                              help=_("skip files larger than this (MiB)"))
        indexing.add_argument(
            "--follow-links", action="store_true", default=None,
            help=_("follow symlinks that lead out of the folders given (skipped by default); "
                   "kept for later reindexes"))
    s.add_parser("list", help=_("all knowledge bases"))
    search = s.add_parser("search", help=_("the best passages for a query"))
    search.add_argument("name")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help=_("how many passages"))
    rm = s.add_parser("rm", help=_("delete a knowledge base (not your files)"))
    rm.add_argument("name")
    for action in s.choices.values():
        action.add_argument("--json", action="store_true", help=_("machine-readable output"))
    return p


MAX_FILE_MIB = 1024 * 1024
"""The largest --max-mb taken (a terabyte): above it the number is a typo."""


def _size_mib(text: str) -> float:
    """--max-mb: a size in MiB, more than 0 (nan, inf and negatives refused in one line)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("{text!r} is not a number of MiB", text=text)) from None
    if not math.isfinite(value) or value <= 0 or value > MAX_FILE_MIB:
        raise argparse.ArgumentTypeError(
            _("{text!r} is not a size: give MiB above 0, like 20 or 0.5", text=text))
    return value


def _progress_printer(err: TextIO) -> ProgressFn:
    def show(p: Progress) -> None:
        if not err.isatty():
            return
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        done = f"{p.files_done}/{count(p.files_total, 'file')}, {count(p.chunks, 'chunk')}"
        err.write(f"\r{done}{eta}   ")
        err.flush()
        if p.files_done == p.files_total:
            err.write("\n")

    return show


def _report(report: IngestReport, name: str, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        out.write(json.dumps({"name": name, **asdict(report)}, ensure_ascii=False) + "\n")
        return
    for line in report.problems:
        err.write(_("skipped: {printable}\n",
                    printable=printable(line)))  # a file name may hold escapes
    out.write(f"{name}: {report.summary()}\n")


def cmd_kb(args: argparse.Namespace, settings: Settings | None, paths: Paths,
           out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = for_terminal(out or sys.stdout)
    err = err or sys.stderr  # not wrapped: its progress line returns the cursor with \r
    lib = KBLibrary(paths.data_dir)
    action = getattr(args, "kb_command", None)
    as_json = bool(getattr(args, "json", False))
    try:
        if action in ("add", "reindex"):
            if action == "add":
                kb = lib.open_or_create(args.name)
                kb.add_paths(args.paths)
            else:
                kb = lib.open(args.name)
            if args.follow_links:
                kb.set_follow_links(True)
            try:
                report = kb.reindex(progress=_progress_printer(err),
                                    max_bytes=int(args.max_mb * 2**20))
            except KeyboardInterrupt:
                err.write(_("\ninterrupted: the previous index is kept\n"))
                return 130
            _report(report, kb.name, as_json, out, err)
        elif action == "list":
            infos = lib.list()
            if as_json:
                out.write(json.dumps([asdict(i) for i in infos], ensure_ascii=False) + "\n")
                return 0
            if not infos:
                out.write(_("no knowledge bases yet: lmdesk kb add NAME PATH...\n"))
            for i in infos:
                dense = f", dense: {i.dense}" if i.dense else ""
                out.write(f"{i.name}\t{count(i.files, 'file')}\t{count(i.chunks, 'chunk')}{dense}\t"
                          f"{', '.join(i.paths)}\n")
        elif action == "search":
            kb = lib.open(args.name)
            hits = kb.search(args.query, args.k)
            if as_json:
                out.write(json.dumps([
                    {"path": h.chunk.path, "start": h.chunk.start, "end": h.chunk.end,
                     "page": h.chunk.page, "heading": h.chunk.heading, "score": h.score,
                     "text": h.chunk.text} for h in hits], ensure_ascii=False) + "\n")
                return 0
            if not hits:
                out.write(_("no matches\n"))
            for n, h in enumerate(hits, 1):
                loc = ("p. " if h.chunk.page else ":") + h.chunk.location
                out.write(f"[{n}] {h.chunk.path}{loc}  ({h.score:.2f})"
                          f"{'  ' + h.chunk.heading if h.chunk.heading else ''}\n")
                snippet = " ".join(h.chunk.text.split())[:200]
                out.write(f"    {snippet}\n")
        elif action == "rm":
            lib.remove(args.name)
            if as_json:
                out.write(json.dumps({"removed": args.name}) + "\n")
            else:
                out.write(_("removed knowledge base {name} (your files are untouched)\n",
                            name=args.name))
        else:
            err.write(_("usage: lmdesk kb {add,reindex,list,search,rm} ...\n"))
            return 2
    except KBError as exc:
        if as_json:
            out.write(json.dumps({"error": str(exc)}) + "\n")
        err.write(_("lmdesk: {exc}\n", exc=exc))
        return 1
    return 0
