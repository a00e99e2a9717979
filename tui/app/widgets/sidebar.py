"""The conversation list on the left: pinned first, then the most recent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui.i18n import N_, _
from tui.store import ConversationMeta, EndpointModel

PIN = "▪ "


class ConversationList(OptionList):
    """Enter opens; delete / r / p act on the highlighted conversation."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("delete", "screen.delete_conversation", N_("Delete"), show=False,
                id="sidebar.delete"),
        Binding("r", "screen.rename_conversation", N_("Rename"), show=False, id="sidebar.rename"),
        Binding("p", "screen.pin_conversation", N_("Pin"), show=False, id="sidebar.pin"),
    ]

    def set_conversations(self, metas: Sequence[ConversationMeta], current: str | None) -> None:
        highlighted = self.highlighted_id
        options = []
        for meta in metas:
            options.append(Option(conversation_prompt(meta), id=meta.id))
        self.clear_options()
        self.add_options(options)
        keep = current if current is not None else highlighted
        ids = [meta.id for meta in metas]
        if keep in ids:
            self.highlighted = ids.index(keep)

    @property
    def highlighted_id(self) -> str | None:
        if self.highlighted is None or self.option_count == 0:
            return None
        return self.get_option_at_index(self.highlighted).id


class ConversationPrompt(Table):
    """A row of the list: a grid of the pin mark and the title, readable as plain text."""

    def __init__(self, plain: str) -> None:
        super().__init__(box=None, show_header=False, show_edge=False, pad_edge=False,
                         padding=0, expand=True)
        self.plain = plain

    def __str__(self) -> str:
        return self.plain


def conversation_prompt(meta: ConversationMeta) -> ConversationPrompt:
    """The pin mark in a column of its own and the title beside it, so a long title wraps
    under itself inside the list (a plain Text wrapped back to the list's left edge)."""
    title = Text(meta.title or "Untitled", overflow="fold")
    remote = meta.options.model
    if isinstance(remote, EndpointModel):  # runs on a remote endpoint: say so
        title.append(f" ⇄ {remote.endpoint_name or remote.endpoint_id}", style="italic")
    mark = PIN if meta.pinned else "  "
    grid = ConversationPrompt(mark + title.plain)
    grid.add_column(width=len(PIN), no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row(Text(mark, style="bold"), title)
    return grid


class Sidebar(Vertical):
    DEFAULT_CSS = """
    Sidebar {
        height: 1fr;
        & > .sidebar-title {
            color: $text-muted;
            padding: 0 1;
            width: 1fr;
        }
        & > ConversationList {
            height: 1fr;
            border: none;
            padding: 0;
            background: transparent;
        }
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def compose(self) -> ComposeResult:
        yield Static(_("Conversations"), classes="sidebar-title")
        yield ConversationList(id="conversations")

    @property
    def list(self) -> ConversationList:
        return self.query_one(ConversationList)
