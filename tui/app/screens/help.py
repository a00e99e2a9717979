"""Every key binding in a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _

Row = tuple[str, str, str]
"""(keys, what it does, binding id)"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = (
        "HelpScreen {" + MODAL_CSS + """
        & > Vertical { width: 100%; max-width: 120; height: 90%; }
        DataTable { height: 1fr; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "close", N_("Close"), id="help.close"),
    ]

    def __init__(self, rows: Sequence[Row]) -> None:
        super().__init__()
        self._rows = list(rows)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Keys")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Static(
                _('Remap a key in config.toml: [keymap] then id = "keys", e.g. regenerate = '
                  '"f11" (a key another action has is refused). ^p: the command palette.'),
                classes="modal-hint", markup=False,
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # the id before the description: the id is what config.toml needs, so it is never the
        # column cut off in a narrow terminal
        table.add_columns(_("keys"), "id", _("does"))
        table.add_rows([(keys, binding_id, does) for keys, does, binding_id in self._rows])
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
