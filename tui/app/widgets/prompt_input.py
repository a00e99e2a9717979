"""The prompt box: Enter sends, ctrl+j / alt+enter add a line, up/down at the edges recall."""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, cast

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from tui.i18n import N_, _


class _TerminalKey(Enum):
    """Key names for sequences Textual's parser reads as another key (it has ``.value`` like
    Textual's own ``Keys``)."""

    ALT_ENTER = "alt+enter"


ALT_ENTER_SEQUENCES = ("\x1b\r", "\x8d")
"""What alt+enter sends where the terminal does not speak the kitty keyboard protocol: ESC CR
(tmux, screen, xterm with metaSendsEscape, most emulators) or the 8-bit form (xterm's
default eightBitInput). Textual drops the ESC and reads plain enter, so alt+enter sent."""


def register_terminal_keys() -> None:
    """Teach Textual's input parser that these sequences are alt+enter (idempotent; called
    when the app starts, never at import)."""
    from textual._ansi_sequences import ANSI_SEQUENCES_KEYS

    table = cast("dict[str, object]", ANSI_SEQUENCES_KEYS)
    for sequence in ALT_ENTER_SEQUENCES:
        table.setdefault(sequence, (_TerminalKey.ALT_ENTER,))


class PromptInput(TextArea):
    """A multi-line prompt with a history of what was sent."""

    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 3;
        max-height: 10;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "send", N_("Send"), id="send", show=False),
        Binding("ctrl+j,alt+enter,shift+enter", "newline", N_("Newline"), id="newline", show=False),
    ]
    _IN_ORDER_ACTIONS: ClassVar[frozenset[str]] = frozenset({"send", "newline"})

    class Send(Message):
        """The user pressed Enter on a prompt."""

        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

        @property
        def control(self) -> PromptInput:
            return self.prompt

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("tab_behavior", "focus")
        kwargs.setdefault("highlight_cursor_line", False)
        kwargs.setdefault("placeholder", _("Ask anything. Enter sends, ctrl+j adds a line."))
        super().__init__(**kwargs)
        self.prompt_history: list[str] = []
        self._recall_index: int | None = None
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        """Send and newline run here, in the widget's own queue, after every key typed before
        them: as priority bindings they ran at once, so over SSH (or tmux) a fast burst ending
        in Enter sent the prompt before its last characters had landed."""
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if binding.action in self._IN_ORDER_ACTIONS:
                event.stop()
                event.prevent_default()
                await self.run_action(binding.action)
                return
        await super()._on_key(event)

    def action_send(self) -> None:
        text = self.text
        if not text.strip():
            return
        self.post_message(self.Send(self, text))

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    # -- history -------------------------------------------------------------------------------

    def remember(self, text: str) -> None:
        """Add a sent prompt to the history (and end any recall in progress)."""
        if text.strip() and (not self.prompt_history or self.prompt_history[-1] != text):
            self.prompt_history.append(text)
        self._recall_index = None
        self._draft = ""

    def set_history(self, prompts: list[str]) -> None:
        self.prompt_history = [p for p in prompts if p.strip()]
        self._recall_index = None

    def recall(self, step: int) -> bool:
        """Show an older (-1) or newer (+1) prompt; False when there is none."""
        if not self.prompt_history:
            return False
        if self._recall_index is None:
            if step > 0:
                return False
            self._draft = self.text
            index = len(self.prompt_history) - 1
        else:
            index = self._recall_index + step
        if index < 0:
            return False
        if index >= len(self.prompt_history):
            self._recall_index = None
            self._set_text(self._draft)
            return True
        self._recall_index = index
        self._set_text(self.prompt_history[index])
        return True

    def _set_text(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self.recall(-1):
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if not select and self.cursor_location[0] == last_row and self.recall(1):
            return
        super().action_cursor_down(select)

    def set_prompt(self, text: str) -> None:
        """Replace the text (edit-and-resend), cursor at the end."""
        self._recall_index = None
        self._set_text(text)
