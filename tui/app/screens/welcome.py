"""The first-run welcome: where data is kept, that nothing leaves the machine, which model is
loaded and what this machine could run next. Shown once (the store remembers), and any time
later from the help screen, the palette or the doctor screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.app.screens.confirm import MODAL_CSS
from tui.app.screens.doctor import CHECKING, DoctorFailed, DoctorReady, build_report
from tui.doctor import first_run_text, is_first_run, mark_first_run_done

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


def should_welcome(app: LmdeskApp) -> bool:
    """A fresh store that can remember it was welcomed."""
    if app.read_only:
        return False
    try:
        return is_first_run(app.store)
    except Exception:
        return False


class WelcomeScreen(ModalScreen[None]):
    DEFAULT_CSS = (
        "WelcomeScreen {" + MODAL_CSS + """
        & > Vertical { width: 90; }
        #welcome-text { margin-bottom: 1; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", id="welcome.close"),
        Binding("m", "models", "Models", id="welcome.models"),
        Binding("d", "doctor", "Doctor", id="welcome.doctor"),
    ]

    def __init__(self, *, first_run: bool = False) -> None:
        super().__init__()
        self.first_run = first_run

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Welcome to lmdesk"
            yield Static(CHECKING, id="welcome-text", markup=False)
            yield Static(
                "m: choose a model   d: the doctor's full report   enter / esc: start chatting\n"
                "f1 shows every key; ^p finds every action.",
                classes="modal-hint", markup=False,
            )

    def on_mount(self) -> None:
        if self.first_run:
            with self.lmdesk.guard("Could not remember the welcome"):
                mark_first_run_done(self.lmdesk.store)
        self._check()

    @work(thread=True, exclusive=True, group="welcome", exit_on_error=False)
    def _check(self) -> None:
        try:
            report = build_report(self.lmdesk)
        except Exception as exc:
            self.post_message(DoctorFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DoctorReady(report))

    def on_doctor_ready(self, event: DoctorReady) -> None:
        event.stop()
        text = first_run_text(event.report, self.lmdesk.model_name)
        self.query_one("#welcome-text", Static).update(text.rstrip())

    def on_doctor_failed(self, event: DoctorFailed) -> None:
        event.stop()
        self.query_one("#welcome-text", Static).update(
            f"Your conversations are kept on this machine, in {self.lmdesk.paths.data_dir}.\n"
            f"Loaded model: {self.lmdesk.model_name}.\n(The machine check failed: {event.error})"
        )

    @property
    def text(self) -> str:
        return str(self.query_one("#welcome-text", Static).content)

    def action_close(self) -> None:
        self.dismiss(None)

    async def action_models(self) -> None:
        self.dismiss(None)
        await self.lmdesk.run_spec("models")

    def action_doctor(self) -> None:
        from tui.app.screens.doctor import DoctorScreen

        self.dismiss(None)
        self.app.push_screen(DoctorScreen())
