"""Edit a conversation's system prompt."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _


class SystemPromptScreen(ModalScreen[str | None]):
    """Returns the new system prompt, or None when cancelled."""

    DEFAULT_CSS = (
        "SystemPromptScreen {" + MODAL_CSS + """
        & > Vertical { width: 90; }
        TextArea { height: 10; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", N_("Save"), id="system_prompt.save", priority=True),
        # priority: a TextArea that indents on tab takes esc to leave itself otherwise
        Binding("escape", "cancel", N_("Cancel"), id="system_prompt.cancel", priority=True),
    ]

    def __init__(self, text: str, title: str | None = None) -> None:
        super().__init__()
        self._text = text
        self._title = title or _("System prompt")

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            yield TextArea(self._text, id="system-text", soft_wrap=True, tab_behavior="indent")
            yield Static(_("ctrl+s: save   esc: cancel"), classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Cancel"), id="cancel")
                yield Button(_("Save"), id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
