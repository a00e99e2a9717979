"""The tools screen: what the model may call in this conversation.

Each row is something a user can enable: a built-in tool (calculator, time, files, knowledge)
or an MCP server configured in config.toml, with its tools listed once it has started. Space
enables or disables the highlighted row for the open conversation; ``a`` puts its tools on the
always-allow list (they run without asking) or takes them off. The servers are started in a
worker, so a slow or broken one only shows its one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _
from tui.store import ConversationMeta
from tui.tools import BUILTIN_NAMES, ToolError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


@dataclass
class Row:
    enable: str
    """What goes in the conversation's options ("calc", "mcp:notes")."""
    about: str
    tools: list[str]
    error: str = ""


class ToolsScreen(ModalScreen[None]):
    DEFAULT_CSS = (
        "ToolsScreen {" + MODAL_CSS + """
        & > Vertical { width: 100; }
        #tools-list { height: 14; }
        #tools-detail { height: auto; max-height: 8; color: $text-muted; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "switch", N_("Enable"), id="tools.toggle"),
        Binding("a", "always", N_("Always allow"), id="tools.always"),
        Binding("escape", "close", N_("Close"), id="tools.close"),
    ]

    class Listed(Message):
        def __init__(self, rows: list[Row]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self, conversation_id: str | None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.rows: list[Row] = [Row(name, _(about), []) for name, about in BUILTIN_NAMES.items()]
        self.enabled: set[str] = set()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Tools")
            yield Static(_("What the model may call in this conversation. Each call is shown to "
                           "you first, unless its tool is always allowed."), markup=False)
            yield OptionList(id="tools-list")
            yield Static(id="tools-detail", markup=False)
            yield Static(_("space: on/off here   a: always allow / ask first   esc: close"),
                         classes="modal-hint")

    def on_mount(self) -> None:
        meta = self._meta()
        self.enabled = set(meta.options.tools) if meta is not None else set()
        self._fill()
        self.query_one(OptionList).focus()
        self._list_servers()

    def _meta(self) -> ConversationMeta | None:
        if self.conversation_id is None:
            return None
        with self.lmdesk.guard(_("Could not read the conversation")):
            return self.lmdesk.store.get_conversation(self.conversation_id)
        return None

    @work(thread=True, exclusive=True, group="tools-list", exit_on_error=False)
    def _list_servers(self) -> None:
        """Start each configured MCP server to list its tools (a broken one: its error)."""
        app = self.lmdesk
        rows = [Row(name, _(about), []) for name, about in BUILTIN_NAMES.items()]
        for server in app.tool_config.mcp_servers:
            row = Row(f"mcp:{server.name}", _("MCP server · {where}", where=server.where), [])
            try:
                row.tools = [t.name for t in app.tool_hub.tools(server.name)]
            except ToolError as exc:
                row.error = str(exc)
            rows.append(row)
        self.post_message(self.Listed(rows))

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self.rows = message.rows
        self._fill()

    def _always(self) -> set[str]:
        return set(self.lmdesk.always_allowed_tools())

    def _fill(self) -> None:
        listing = self.query_one(OptionList)
        keep = listing.highlighted or 0
        always = self._always()
        listing.clear_options()
        for row in self.rows:
            mark = "■" if row.enable in self.enabled else "□"
            tools = row.tools or _builtin_tools(row.enable)
            allowed = _(" · always allowed") if tools and set(tools) <= always else ""
            state = f" · {row.error}" if row.error else ""
            listing.add_option(Option(Content(f"{mark} {row.enable:<12} {row.about}"
                                              f"{allowed}{state}"), id=row.enable))
        if self.rows:
            listing.highlighted = min(keep, len(self.rows) - 1)
        self._detail()

    def _selected(self) -> Row | None:
        index = self.query_one(OptionList).highlighted
        return self.rows[index] if index is not None and index < len(self.rows) else None

    def _detail(self) -> None:
        row = self._selected()
        text = ""
        if row is not None:
            tools = row.tools or _builtin_tools(row.enable)
            text = (row.error or ("Tools: " + ", ".join(tools) if tools else
                                  _("Its tools are listed once the server has started.")))
        self.query_one("#tools-detail", Static).update(text)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._detail()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_switch()

    def action_switch(self) -> None:
        row = self._selected()
        if row is None or self.conversation_id is None:
            return
        if row.enable in self.enabled:
            self.enabled.discard(row.enable)
        else:
            self.enabled.add(row.enable)
        ordered = tuple(r.enable for r in self.rows if r.enable in self.enabled)
        with self.lmdesk.guard(_("Could not change this conversation's tools")):
            new = self.lmdesk.store.update_options(self.conversation_id, tools=ordered)
            self.lmdesk.conversation_options_changed(self.conversation_id, new.options)
        self._fill()

    def action_always(self) -> None:
        row = self._selected()
        if row is None:
            return
        tools = row.tools or _builtin_tools(row.enable)
        if not tools:
            self.notify(_("Its tools are not known yet: wait for the server to start."))
            return
        always = self._always()
        if set(tools) <= always:
            self.lmdesk.set_always_allowed_tools(sorted(always - set(tools)))
        else:
            self.lmdesk.set_always_allowed_tools(sorted(always | set(tools)))
        self._fill()

    def action_close(self) -> None:
        self.dismiss(None)


def _builtin_tools(enable: str) -> list[str]:
    if enable not in BUILTIN_NAMES:
        return []
    return [name.strip() for name in BUILTIN_NAMES[enable].split(":", 1)[0].split(",")]

