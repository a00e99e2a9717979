"""``lmdesk doctor``: the machine, what it can run, the install's health, the network."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from tui.config import Paths, Settings
from tui.i18n import _


def add_doctor_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``doctor`` to the ``lmdesk`` subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor", help=_("this machine, what it can run, the install's health, the network")
    )
    p.add_argument("--json", action="store_true", help=_("print one JSON object (for scripts)"))
    return p


def cmd_doctor(
    args: argparse.Namespace,
    settings: Settings,
    paths: Paths,
    *,
    offline: Any | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the report. Exit status 0, or 1 when a problem was found (still printed in full).
    ``offline`` is the ``OfflineState`` main() applied, if any."""
    from tui.doctor.report import doctor_report, render_text

    stream = sys.stdout if out is None else out
    report = doctor_report(settings, paths, offline=offline)
    if getattr(args, "json", False):
        stream.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        stream.write(render_text(report))
    stream.flush()
    return 1 if report.problems else 0
