"""The scrolling list of messages. A long conversation mounts only a window of it.

Opening a conversation mounts the last ``PAGE`` messages; earlier ones are mounted a page at a
time when the view reaches the top (or on "load earlier"). The view stays on the bottom while a
reply streams, unless the user scrolled up (Textual's anchor).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.widgets import Static

from tui.app.widgets.message_view import (
    LiveReply,
    MessageView,
    MessageWidget,
    size_updated_once,
)
from tui.i18n import N_, n_
from tui.store import StoredMessage

PAGE = 50



COPY_CODE = (N_("Copy code 1"), N_("Copy code 2"), N_("Copy code 3"), N_("Copy code 4"),
             N_("Copy code 5"), N_("Copy code 6"), N_("Copy code 7"), N_("Copy code 8"),
             N_("Copy code 9"))
"""The keys 1-9's descriptions (a binding's description is a fixed text, each in the catalog)."""

class EarlierMarker(Static):
    """Says how many messages are not shown yet, at the top or the bottom of the log."""

    DEFAULT_CSS = """
    EarlierMarker {
        color: $text-muted;
        text-align: center;
        width: 1fr;
    }
    """


class ChatLog(VerticalScroll, can_focus=True):
    """Messages of the open conversation. Focus it to select a message with up/down."""

    DEFAULT_CSS = """
    ChatLog > .-outside {
        text-opacity: 55%;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "select(-1)", N_("Previous"), show=False, id="log.previous"),
        Binding("down", "select(1)", N_("Next"), show=False, id="log.next"),
        Binding("left", "screen.sibling(-1)", N_("Previous version"), show=False,
                id="log.version_previous"),
        Binding("right", "screen.sibling(1)", N_("Next version"), show=False,
                id="log.version_next"),
        Binding("e", "screen.edit_last", N_("Edit from here"), show=False, id="log.edit"),
        Binding("f", "screen.fork_conversation", N_("Fork from here"), show=False, id="log.fork"),
        Binding("delete", "screen.delete_message", N_("Delete with what follows"), show=False,
                id="log.delete"),
        Binding("home", "select_edge(0)", N_("First"), show=False, id="log.first"),
        Binding("end", "select_edge(1)", N_("Last"), show=False, id="log.last"),
        Binding("enter", "screen.copy_message", N_("Copy"), show=False, id="log.copy"),
        *(
            Binding(str(n), f"screen.copy_code({n})", COPY_CODE[n - 1], show=False,
                    id=f"log.code{n}")
            for n in range(1, 10)
        ),
    ]

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated_once(self, size, virtual_size, container_size)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history: list[StoredMessage] = []
        self._first = 0
        self._last = 0
        self.selected: MessageWidget | None = None
        self._loading = False
        self.outside: frozenset[str] = frozenset()
        """Ids of the messages left out of the last prompt's context window (dimmed)."""
        self.versions: dict[str, tuple[int, int]] = {}
        """(n, of) for the messages shown that have other versions (siblings in the tree)."""

    # -- what is mounted -----------------------------------------------------------------------

    def _view(self, message: StoredMessage) -> MessageView:
        return MessageView(message, version=self.versions.get(message.id))

    def set_versions(self, versions: dict[str, tuple[int, int]]) -> None:
        """New version counts (a reply regenerated, a prompt edited): redraw what changed."""
        self.versions = versions
        for view in self.views():
            if isinstance(view, MessageView):
                view.set_version(versions.get(view.message_id))

    def views(self) -> list[MessageWidget]:
        return [child for child in self.children if isinstance(child, MessageWidget)]

    def view_for(self, message_id: str) -> MessageWidget | None:
        for view in self.views():
            if view.message_id == message_id:
                return view
        return None

    @property
    def hidden_before(self) -> int:
        return self._first

    @property
    def hidden_after(self) -> int:
        return len(self.history) - self._last

    def _marker(self, where: str) -> EarlierMarker:
        if where == "top":
            n = self._first
            text = n_("▲ {count} earlier message (scroll up or ctrl+l)",
                      "▲ {count} earlier messages (scroll up or ctrl+l)", n)
        else:
            n = len(self.history) - self._last
            text = n_("▼ {count} later message (scroll down)",
                      "▼ {count} later messages (scroll down)", n)
        return EarlierMarker(text, classes=f"-{where}", markup=False)

    async def _sync_markers(self) -> None:
        for marker in self.query_children(EarlierMarker).results(EarlierMarker):
            await marker.remove()
        if self._first > 0:
            await self.mount(self._marker("top"), before=0)
        if self._last < len(self.history):
            await self.mount(self._marker("bottom"))

    # -- opening and appending -----------------------------------------------------------------

    async def show(self, history: list[StoredMessage], around: str | None = None) -> None:
        """Show a conversation: its last page, or a page around message ``around``."""
        self.history = history
        total = len(history)
        index = None
        if around is not None:
            index = next((i for i, m in enumerate(history) if m.id == around), None)
        if index is not None and index < total - PAGE:
            first = max(0, index - 5)
            await self._remount(first, min(total, first + PAGE))
        else:
            await self._remount(max(0, total - PAGE), total)
        if index is None:
            self.anchor()
            return
        self.anchor(False)
        view = self.view_for(history[index].id)
        if view is not None:
            self.select(view)
            self.call_after_refresh(self.scroll_to_widget, view, top=True, animate=False)

    async def _remount(self, first: int, last: int) -> None:
        self.selected = None
        self._first, self._last = first, last
        views = [self._view(m) for m in self.history[first:last]]
        self._dim(views)
        with self.app.batch_update():
            await self.remove_children()
            await self.mount_all(views)
            await self._sync_markers()

    async def add(self, message: StoredMessage) -> MessageView:
        """Append ``message`` (the caller added it to ``history`` first) and follow it."""
        view = self._view(message)
        await self._append(view)
        return view

    async def add_live(self, message: StoredMessage) -> LiveReply:
        """Append the reply about to be streamed (its placeholder is in ``history``)."""
        live = LiveReply(message)
        await self._append(live)
        return live

    async def live_in_place(self, message: StoredMessage) -> LiveReply:
        """Stream more of ``message`` (a reply being continued) in place of its view."""
        old = self.view_for(message.id)
        if old is None:
            return await self.add_live(message)
        live = LiveReply(message)
        with self.app.batch_update():
            await self.mount(live, after=old)
            await old.remove()
        if self.selected is old:
            self.select(live)
        self.anchor()
        return live

    async def _append(self, view: MessageWidget) -> None:
        total = len(self.history)
        if self._last < total - 1:
            await self._remount(max(0, total - 1 - PAGE), total - 1)
        self._last = total
        await self.mount(view)
        if not self._anchored or self._anchor_released:
            self.anchor()

    async def replace(self, old: MessageWidget, message: StoredMessage) -> MessageView:
        """Show ``message`` in place of ``old`` (a finished reply replaces its live view)."""
        view = self._view(message)
        view.reasoning_shown = bool(getattr(old, "reasoning_shown", False))
        with self.app.batch_update():
            await self.mount(view, after=old)
            await old.remove()
        if self.selected is old:
            self.select(view)
        return view

    async def remove_message(self, message_id: str) -> None:
        """Drop a message (already removed from ``history`` by the caller) from the view."""
        view = self.view_for(message_id)
        if view is not None:
            if view is self.selected:
                self.selected = None
            await view.remove()
            self._last = max(self._first, self._last - 1)

    async def load_earlier(self) -> int:
        """Mount the previous page at the top, keeping what is on screen in place."""
        if self._first == 0 or self._loading:
            return 0
        self._loading = True
        try:
            start = max(0, self._first - PAGE)
            views = [self._view(m) for m in self.history[start : self._first]]
            self._dim(views)
            old_height = self.virtual_size.height
            old_y = self.scroll_y
            mounted = self.views()
            first = mounted[0] if mounted else None
            with self.app.batch_update():
                await self.mount_all(views, before=first)
                self._first = start
                await self._sync_markers()
            self.release_anchor()

            def keep_place() -> None:
                grown = self.virtual_size.height - old_height
                self.scroll_to(y=old_y + grown, animate=False, immediate=True)

            self.call_after_refresh(keep_place)
            return len(views)
        finally:
            self._loading = False

    async def load_later(self) -> int:
        if self._last >= len(self.history) or self._loading:
            return 0
        self._loading = True
        try:
            end = min(len(self.history), self._last + PAGE)
            views = [self._view(m) for m in self.history[self._last : end]]
            self._dim(views)
            mounted = self.views()
            await self.mount_all(views, after=mounted[-1] if mounted else None)
            self._last = end
            await self._sync_markers()
            return len(views)
        finally:
            self._loading = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        old, new = old_value, new_value
        if new <= 0 and old > 0 and self._first > 0:
            self.run_worker(self.load_earlier(), group="log-page", exclusive=True)
        elif new >= self.max_scroll_y > 0 and old < new and self._last < len(self.history):
            self.run_worker(self.load_later(), group="log-page", exclusive=True)

    # -- the context window ------------------------------------------------------------------

    def mark_outside(self, message_ids: Iterable[str]) -> None:
        """Dim the messages the last prompt left out of the context window."""
        self.outside = frozenset(message_ids)
        self._dim(self.views())

    def _dim(self, views: Iterable[MessageWidget]) -> None:
        for view in views:
            view.set_class(view.message_id in self.outside, "-outside")

    # -- selection -----------------------------------------------------------------------------

    def select(self, view: MessageWidget | None) -> None:
        if self.selected is not None and self.selected.is_attached:
            self.selected.remove_class("-selected")
        self.selected = view
        if view is not None:
            view.add_class("-selected")

    def on_focus(self) -> None:
        if self.selected is None or not self.selected.is_attached:
            views = self.views()
            if views:
                self.select(views[-1])
                self.scroll_to_widget(views[-1], animate=False)

    def on_blur(self) -> None:
        self.select(None)

    def action_select(self, step: int) -> None:
        views = self.views()
        if not views:
            return
        selected = self.selected
        index = views.index(selected) + step if selected in views else len(views) - 1
        if index < 0:
            self.run_worker(self.load_earlier(), group="log-page", exclusive=True)
            index = 0
        index = min(index, len(views) - 1)
        self.select(views[index])
        self.scroll_to_widget(views[index], animate=False)

    def action_select_edge(self, end: int) -> None:
        views = self.views()
        if views:
            view = views[-1] if end else views[0]
            self.select(view)
            self.scroll_to_widget(view, animate=False)
