"""The doctor on a screen: the same facts as ``lmdesk doctor`` (machine, what it can run, the
install's health, the network). The report takes a moment (it probes llama.cpp in a
subprocess), so it is built in a thread worker and shown when it arrives."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Static

from tui.app.screens.confirm import MODAL_CSS
from tui.app.widgets.markdown_lite import Block, BlocksVisual
from tui.doctor import DoctorReport, doctor_report, render_text
from tui.i18n import N_, _

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

CHECKING = N_("Checking this machine…")
_HANG = re.compile(r"^(\s*(?:- |\S+(?: \S+)?\s{2,})?)")
"""What a wrapped line of the report goes on under: its indent, and a "label   " column or
a "- " bullet."""


def hanging_blocks(text: str) -> list[Block]:
    """One block per line of ``text``, wrapped lines indented under the line's value."""
    blocks = []
    for line in text.split("\n"):
        match = _HANG.match(line)
        prefix = match.group(1) if match else ""
        if len(prefix) > 40:  # not a label column: just the indent
            prefix = line[: len(line) - len(line.lstrip())]
        blocks.append(Block(Content(line[len(prefix):]), first=Content(prefix),
                            rest=Content(" " * len(prefix))))
    return blocks


class HangingText(Widget):
    """Plain text whose wrapped lines go on under their value, not at column 0."""

    DEFAULT_CSS = "HangingText { height: auto; }"

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.text = text
        self._visual = BlocksVisual(hanging_blocks(text))

    def update(self, text: str) -> None:
        self.text = text
        self._visual = BlocksVisual(hanging_blocks(text))
        self.refresh(layout=True)

    def render(self) -> BlocksVisual:
        return self._visual


def build_report(app: LmdeskApp) -> DoctorReport:
    """The doctor's report for the running app (blocking: call it from a thread)."""
    return doctor_report(app.settings, app.paths, store=app.store, llama=app.doctor_llama)


class DoctorReady(Message):
    def __init__(self, report: DoctorReport) -> None:
        super().__init__()
        self.report = report


class DoctorFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class DoctorScreen(ModalScreen[None]):
    """``lmdesk doctor`` in the app."""

    DEFAULT_CSS = (
        "DoctorScreen {" + MODAL_CSS + """
        & > Vertical { width: 110; height: 90%; }
        #doctor-scroll { height: 1fr; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", N_("Close"), id="doctor.close"),
        Binding("r", "refresh_report", N_("Check again"), id="doctor.refresh"),
        Binding("w", "welcome", N_("Welcome"), id="doctor.welcome"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: DoctorReport | None = None

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Doctor")
            with VerticalScroll(id="doctor-scroll"):
                yield HangingText(_(CHECKING), id="doctor-text")
            yield Static(_("r: check again   w: the welcome note   esc: close"),
                         classes="modal-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#doctor-scroll").focus()
        self._check()

    @work(thread=True, exclusive=True, group="doctor", exit_on_error=False)
    def _check(self) -> None:
        try:
            report = build_report(self.lmdesk)
        except Exception as exc:  # the doctor must never take the app down
            self.post_message(DoctorFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DoctorReady(report))

    def on_doctor_ready(self, event: DoctorReady) -> None:
        event.stop()
        self.report = event.report
        self.query_one("#doctor-text", HangingText).update(render_text(event.report))

    def on_doctor_failed(self, event: DoctorFailed) -> None:
        event.stop()
        self.query_one("#doctor-text", HangingText).update(
            _("The check failed: {error}\nPress r to try again.", error=event.error)
        )

    @property
    def text(self) -> str:
        return self.query_one("#doctor-text", HangingText).text

    def action_refresh_report(self) -> None:
        self.query_one("#doctor-text", HangingText).update(_(CHECKING))
        self._check()

    def action_welcome(self) -> None:
        from tui.app.screens.welcome import WelcomeScreen

        self.dismiss(None)
        self.app.push_screen(WelcomeScreen())

    def action_close(self) -> None:
        self.dismiss(None)
