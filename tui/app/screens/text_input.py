"""Ask for one line of text (a title, a path, a number) in a small modal."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _


class TextInputScreen(ModalScreen[str | None]):
    """Returns the text (stripped), or None when cancelled."""

    DEFAULT_CSS = ("TextInputScreen {" + MODAL_CSS + """
        #input-error { color: $text-error; display: none; }
        #input-error.-on { display: block; }
    }""")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", N_("Cancel"), id="input.cancel"),
    ]

    def __init__(
        self, title: str, value: str = "", *, hint: str = "", placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        """``check`` sees the text before the dialog closes: a message it returns is shown
        here and the dialog stays open (what was typed kept)."""
        super().__init__()
        self._title = title
        self._value = value
        self._hint = hint
        self._placeholder = placeholder
        self._check = check

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            yield Input(self._value, placeholder=self._placeholder, id="value")
            yield Static("", id="input-error", markup=False)
            yield Static(self._hint or _("Enter: OK   esc: cancel"), classes="modal-hint",
                         markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = self._check(value) if value and self._check is not None else None
        if problem:
            error = self.query_one("#input-error", Static)
            error.update(f"⚠ {problem}")
            error.add_class("-on")
            return
        self.dismiss(value or None)

    @property
    def error_text(self) -> str:
        """The problem shown under the box ("" when none)."""
        error = self.query_one("#input-error", Static)
        return str(error.content) if error.has_class("-on") else ""

    def action_cancel(self) -> None:
        self.dismiss(None)
