"""The memory: facts about the user added to the system prompt of conversations with memory on.
List, add, edit, disable, delete; toggle memory for this conversation; ask the model to propose
memories from this conversation and accept or reject each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.app.screens.confirm import MODAL_CSS
from tui.engine.errors import EngineError
from tui.i18n import N_, _
from tui.prompting import build_messages
from tui.prompting.memory import Memory, MemoryStore, memory_on, propose_memories
from tui.prompting.templates import PromptingError
from tui.store import ConversationMeta, StoredMessage, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class MemoriesProposed(Message):
    """The model's proposals (or the reason there are none), from the proposing thread."""

    def __init__(self, proposals: list[str], error: str = "") -> None:
        super().__init__()
        self.proposals = proposals
        self.error = error


class MemoryList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "screen.toggle_memory", N_("Enable/disable"), id="memory.toggle"),
        Binding("e", "screen.edit", N_("Edit"), id="memory.edit"),
        Binding("delete", "screen.delete", N_("Delete"), id="memory.delete"),
        Binding("p", "screen.propose", N_("Propose"), id="memory.propose"),
    ]


class ProposalList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("delete", "screen.reject", N_("Reject"), id="memory.reject"),
    ]


class MemoryScreen(ModalScreen[None]):
    DEFAULT_CSS = (
        "MemoryScreen {" + MODAL_CSS + """
        & > Vertical { width: 100; }
        #memory-list { height: 12; }
        #memory-proposals { height: 8; display: none; }
        #memory-proposals.-shown { display: block; }
        #memory-proposals-label { display: none; color: $text-secondary; }
        #memory-proposals-label.-shown { display: block; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Close"), id="memory.close"),
    ]

    def __init__(self, meta: ConversationMeta | None, history: list[StoredMessage],
                 on_memory_toggle: Callable[[bool], None]) -> None:
        super().__init__()
        self.meta = meta
        self.history = list(history)
        self.on_memory_toggle = on_memory_toggle
        self.memories: list[Memory] = []
        self.proposals: list[str] = []
        self.editing: str | None = None
        self._cancel = threading.Event()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def store(self) -> MemoryStore:
        return MemoryStore(self.lmdesk.store)

    def compose(self) -> ComposeResult:
        on = memory_on(self.meta) if self.meta is not None else True
        with Vertical() as box:
            box.border_title = _("Memory")
            yield Checkbox(_("Memory on in this conversation"), on, id="memory-on",
                           disabled=self.meta is None)
            yield MemoryList(id="memory-list")
            yield Input(placeholder=_("A new memory (Enter adds it)"), id="memory-text")
            yield Static(_("Proposed (enter: accept, delete: reject)"), id="memory-proposals-label")
            yield ProposalList(id="memory-proposals")
            yield Static(_("space: enable/disable   e: edit   delete: delete   p: propose from "
                           "this conversation   esc: close"),
                         classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Close"), id="close")
                yield Button(_("Propose from this conversation"), id="propose",
                             variant="primary")

    def on_mount(self) -> None:
        self.refresh_list()
        self.query_one(MemoryList).focus()

    def refresh_list(self, select: str | None = None) -> None:
        try:
            self.memories = self.store.list_memories()
        except StoreError as exc:
            self.notify(_("Could not read the memory: {exc}", exc=exc), severity="error")
            self.memories = []
        listing = self.query_one(MemoryList)
        old = listing.highlighted
        listing.clear_options()
        if not self.memories:
            listing.add_option(Option(Content(_("No memories yet: type one below, or /remember "
                                                "in the prompt.")), disabled=True))
            return
        listing.add_options([Option(Content(f"{'✓' if m.enabled else '✗'} {m.text}"), id=m.id)
                             for m in self.memories])
        ids = [m.id for m in self.memories]
        if select in ids:
            listing.highlighted = ids.index(select)
        else:
            listing.highlighted = min(old or 0, len(ids) - 1)

    def current(self) -> Memory | None:
        index = self.query_one(MemoryList).highlighted
        if index is None or not self.memories or index >= len(self.memories):
            return None
        return self.memories[index]

    def _try(self, what: str, fn: Callable[[], object]) -> bool:
        try:
            fn()
        except (PromptingError, StoreError) as exc:
            self.notify(f"{what}: {exc}", severity="error")
            return False
        return True

    # -- memories --------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        done: list[Memory] = []
        if self.editing is not None:
            memory_id = self.editing
            ok = self._try(_("Could not save"), lambda: done.append(
                self.store.update(memory_id, text=text)))
        else:
            ok = self._try(_("Could not add"), lambda: done.append(self.store.add(text)))
        if ok:
            self.editing = None
            event.input.value = ""
            event.input.placeholder = _("A new memory (Enter adds it)")
            self.refresh_list(select=done[0].id)

    def action_toggle_memory(self) -> None:
        m = self.current()
        if m is not None and self._try(_("Could not change it"),
                                       lambda: self.store.set_enabled(m.id, not m.enabled)):
            self.refresh_list(select=m.id)

    def action_edit(self) -> None:
        m = self.current()
        if m is None:
            return
        self.editing = m.id
        box = self.query_one("#memory-text", Input)
        box.value = m.text
        box.placeholder = _("Edit the memory (Enter saves)")
        box.focus()

    def action_delete(self) -> None:
        m = self.current()
        if m is not None and self._try(_("Could not delete"), lambda: self.store.remove(m.id)):
            self.notify(_("Forgot: {text}", text=m.text))
            self.refresh_list()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.on_memory_toggle(event.value)

    # -- proposals -------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "propose":
            self.action_propose()
        else:
            self.action_close()

    def action_propose(self) -> None:
        if self.lmdesk.busy_replying():
            self.notify(_("A reply is being written: propose once it is done."),
                        severity="warning")
            return
        if not any(m.role == "user" for m in self.history):
            self.notify(_("This conversation is empty: nothing to propose from."))
            return
        self.notify(_("Asking the model for memories from this conversation…"))
        existing = [m.text for m in self.memories]
        self._propose(build_messages("", self.history), existing)

    @work(thread=True, exclusive=True, group="memory-propose", exit_on_error=False)
    def _propose(self, messages: tuple[object, ...], existing: list[str]) -> None:
        session = self.lmdesk.session
        try:
            loaded = session.wait_ready(self._cancel)
            if loaded is None:
                return
            with session.generation(self._cancel) as got:  # never beside a reply or the API
                if not got:
                    return
                found = propose_memories(loaded.engine, messages,  # type: ignore[arg-type]
                                         existing=existing)
        except (EngineError, PromptingError) as exc:
            self.post_message(MemoriesProposed([], str(exc)))
        except Exception as exc:  # never a traceback
            self.post_message(MemoriesProposed([], f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(MemoriesProposed(found))

    def on_memories_proposed(self, event: MemoriesProposed) -> None:
        event.stop()
        if event.error:
            self.notify(_("Could not propose memories: {error}",
                          error=event.error), severity="error")
            return
        if not event.proposals:
            self.notify(_("The model found nothing new worth remembering."))
            return
        self.proposals = list(event.proposals)
        self._show_proposals()

    def _show_proposals(self) -> None:
        listing = self.query_one(ProposalList)
        shown = bool(self.proposals)
        listing.set_class(shown, "-shown")
        self.query_one("#memory-proposals-label").set_class(shown, "-shown")
        listing.clear_options()
        listing.add_options([Option(Content(text)) for text in self.proposals])
        if shown:
            listing.highlighted = 0
            listing.focus()
        else:
            self.query_one(MemoryList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if isinstance(event.option_list, ProposalList):
            index = event.option_index
            if 0 <= index < len(self.proposals):
                text = self.proposals[index]
                if self._try(_("Could not add"), lambda: self.store.add(text)):
                    del self.proposals[index]
                    self.refresh_list()
                    self._show_proposals()
        else:
            self.action_toggle_memory()

    def action_reject(self) -> None:
        index = self.query_one(ProposalList).highlighted
        if index is not None and 0 <= index < len(self.proposals):
            del self.proposals[index]
            self._show_proposals()

    def action_close(self) -> None:
        self._cancel.set()
        self.dismiss(None)
