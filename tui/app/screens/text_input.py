"""Ask for one line of text (a title, a path, a number) in a small modal."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.app.screens.confirm import MODAL_CSS


class TextInputScreen(ModalScreen[str | None]):
    """Returns the text (stripped), or None when cancelled."""

    DEFAULT_CSS = "TextInputScreen {" + MODAL_CSS + "}"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="input.cancel"),
    ]

    def __init__(
        self, title: str, value: str = "", *, hint: str = "", placeholder: str = ""
    ) -> None:
        super().__init__()
        self._title = title
        self._value = value
        self._hint = hint
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            yield Input(self._value, placeholder=self._placeholder, id="value")
            yield Static(self._hint or "Enter: OK   esc: cancel", classes="modal-hint",
                         markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
