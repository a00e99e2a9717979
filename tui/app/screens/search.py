"""Search every conversation's messages; a result opens its conversation at that message."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _, n_
from tui.store import SearchHit, StoreError

SearchFn = Callable[..., list[SearchHit]]
"""``search(query, reasoning=...)``: ``Store.search``."""


class SearchScreen(ModalScreen[SearchHit | None]):
    DEFAULT_CSS = (
        "SearchScreen {" + MODAL_CSS + """
        & > Vertical { width: 100; height: 80%; }
        OptionList { height: 1fr; border: none; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", N_("Close"), id="search.close"),
        Binding("down", "focus_results", N_("Results"), show=False, id="search.results"),
        Binding("ctrl+t", "toggle_reasoning", N_("Reasoning too"), show=False,
                id="search.reasoning"),
    ]

    def __init__(self, search: SearchFn, query: str = "") -> None:
        super().__init__()
        self._search = search
        self._query = query
        self._hits: list[SearchHit] = []
        self._timer: Timer | None = None
        self.reasoning = False
        """Search the reasoning of thinking models' replies too (ctrl+t)."""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Search all conversations")
            yield Input(self._query, placeholder=_("words to find"), id="search-query")
            yield Static("", id="search-count", classes="modal-hint", markup=False)
            yield Static(_("ctrl+t: search the models' reasoning too"), id="search-hint",
                         classes="modal-hint", markup=False)
            yield OptionList(id="search-results")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self._query:
            self.run_search()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.15, self.run_search)

    def run_search(self) -> None:
        query = self.query_one(Input).value.strip()
        results = self.query_one(OptionList)
        count = self.query_one("#search-count", Static)
        results.clear_options()
        self._hits = []
        if not query:
            count.update("")
            return
        try:
            self._hits = self._search(query, reasoning=self.reasoning)
        except StoreError as exc:
            count.update(_("Search failed: {exc}", exc=exc))
            return
        options = []
        for index, hit in enumerate(self._hits):
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(hit.title, style="bold")
            line.append(f"  {'you' if hit.role == 'user' else hit.role}: ", style="dim")
            line.append(" ".join(hit.snippet.split()))
            options.append(Option(line, id=str(index)))
        results.add_options(options)
        n = len(self._hits)
        count.update(n_("{count} result", "{count} results", n) if n else _("No results"))
        if n:
            results.highlighted = 0

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.run_search()
        results = self.query_one(OptionList)
        if self._hits:
            self.dismiss(self._hits[results.highlighted or 0])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.dismiss(self._hits[int(event.option.id)])

    def action_toggle_reasoning(self) -> None:
        self.reasoning = not self.reasoning
        self.query_one("#search-hint", Static).update(
            _("ctrl+t: answers only") if self.reasoning
            else _("ctrl+t: search the models' reasoning too"))
        self.run_search()

    def action_focus_results(self) -> None:
        self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
