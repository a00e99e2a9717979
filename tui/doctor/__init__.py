"""`lmdesk doctor`: facts about the machine, what it can run, the install's health and the
network, as one ``DoctorReport`` (rendered to text or JSON separately). No Textual here."""

from __future__ import annotations

from tui.doctor.health import Problem
from tui.doctor.report import (
    DoctorReport,
    doctor_report,
    first_run_text,
    is_first_run,
    mark_first_run_done,
    render_text,
)

__all__ = [
    "DoctorReport",
    "Problem",
    "doctor_report",
    "first_run_text",
    "is_first_run",
    "mark_first_run_done",
    "render_text",
]
