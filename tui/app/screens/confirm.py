"""Yes/no question in a small modal."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.i18n import N_, _

MODAL_CSS = """
    align: center middle;
    & > Vertical {
        width: 64;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $primary;
        border-title-color: $text-primary;
        background: $surface;
        padding: 0 1;
    }
    .modal-buttons {
        height: auto;
        align-horizontal: right;
        margin-top: 1;
        & > Button {
            margin-left: 1;
        }
    }
    .modal-hint {
        color: $text-muted;
    }
"""


class ConfirmScreen(ModalScreen[bool]):
    """Returns True for yes."""

    DEFAULT_CSS = "ConfirmScreen {" + MODAL_CSS + "}"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", N_("Yes"), id="confirm.yes"),
        Binding("n,escape", "answer(False)", N_("No"), id="confirm.no"),
    ]

    def __init__(self, title: str, question: str, yes: str | None = None) -> None:
        super().__init__()
        self._title = title
        self._question = question
        self._yes = yes or _("Delete")

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            yield Static(self._question, markup=False)
            yield Static(_("y: yes   n / esc: no"), classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Cancel"), id="no")
                yield Button(self._yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
