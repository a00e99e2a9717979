"""The first-run welcome: where data is kept, that nothing leaves the machine, which model is
loaded and what this machine runs comfortably. Shown once (the store remembers), and any time
later from the help screen, the palette or the doctor screen.

It never swallows what a new user types first: a printable key (or a paste) closes it and
lands in the prompt, so a question typed at once and sent with Enter is asked. Its own keys
are therefore not letters: ctrl+o for the models, f10 for the doctor (the app's own keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.app.screens.confirm import MODAL_CSS
from tui.app.screens.doctor import CHECKING, DoctorFailed, DoctorReady, build_report
from tui.doctor import first_run_text, is_first_run, mark_first_run_done
from tui.i18n import N_, _

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
        Binding("escape,enter", "close", N_("Close"), id="welcome.close"),
        Binding("ctrl+o", "models", N_("Models"), id="welcome.models"),
        Binding("f10", "doctor", N_("Doctor"), id="welcome.doctor"),
    ]

    def __init__(self, *, first_run: bool = False) -> None:
        super().__init__()
        self.first_run = first_run

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Welcome to lmdesk")
            yield Static(_(CHECKING), id="welcome-text", markup=False)
            yield Static(
                _("Just start typing: your question goes to the prompt.\n^o: choose a model   "
                  "f10: the doctor's full report   enter / esc: close\nf1 shows every key; ^p "
                  "finds every action."),
                classes="modal-hint", markup=False,
            )

    def on_mount(self) -> None:
        if self.first_run:
            with self.lmdesk.guard(_("Could not remember the welcome")):
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
            _("Your conversations are kept on this machine, in {data_dir}.\nLoaded model: "
              "{model_name}.\n(The machine check failed: {error})",
              data_dir=self.lmdesk.paths.data_dir, model_name=self.lmdesk.model_name,
              error=event.error)
        )

    @property
    def text(self) -> str:
        return str(self.query_one("#welcome-text", Static).content)

    def action_close(self) -> None:
        self.dismiss(None)

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            self._hand_to_prompt(event.character)

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        self._hand_to_prompt(event.text)

    def _hand_to_prompt(self, text: str) -> None:
        """Close the welcome and put ``text`` in the chat's prompt, focused."""
        from tui.app.widgets.prompt_input import PromptInput

        below = self.app.screen_stack[-2] if len(self.app.screen_stack) > 1 else None
        prompts = list(below.query(PromptInput)) if below is not None else []
        self.dismiss(None)
        if prompts:
            prompt = prompts[0]
            prompt.insert(text)
            prompt.focus()

    async def action_models(self) -> None:
        self.dismiss(None)
        await self.lmdesk.run_spec("models")

    def action_doctor(self) -> None:
        from tui.app.screens.doctor import DoctorScreen

        self.dismiss(None)
        self.app.push_screen(DoctorScreen())
