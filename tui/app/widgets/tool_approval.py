"""Asking the user before a tool runs: the call and its arguments, above the prompt.

The generation thread blocks in ``ApprovalRequest.wait`` while this shows; y allows the call
once, a always allows the tool, n (or esc) denies it (the model is told). Stopping the reply
denies what is pending.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from tui.engine.protocol import ToolCall
from tui.i18n import N_, _
from tui.session.turn import Decision
from tui.tools import Tool

MAX_ARGUMENT_CHARS = 600


@dataclass(eq=False)
class ApprovalRequest:
    """A call waiting for the user's answer (shared by the generation and UI threads)."""

    call: ToolCall
    tool: Tool
    step: int = 1
    decision: Decision = "deny"
    _answered: threading.Event = field(default_factory=threading.Event)

    def answer(self, decision: Decision) -> None:
        self.decision = decision
        self._answered.set()

    def wait(self, cancel: threading.Event) -> Decision:
        """Block until answered; "deny" when ``cancel`` is set first."""
        while not self._answered.wait(0.05):
            if cancel.is_set():
                return "deny"
        return self.decision

    @property
    def answered(self) -> bool:
        return self._answered.is_set()


def describe_call(call: ToolCall) -> str:
    """``lookup {"word": "lmdesk"}`` with the arguments pretty but short."""
    try:
        args = json.dumps(json.loads(call.arguments or "{}"), ensure_ascii=False)
    except ValueError:
        args = call.arguments
    if len(args) > MAX_ARGUMENT_CHARS:
        args = args[:MAX_ARGUMENT_CHARS] + "…"
    return f"{call.name} {args}"


class ToolApproval(Static, can_focus=True):
    """The pending call: y once, a always, n deny."""

    DEFAULT_CSS = """
    ToolApproval {
        display: none;
        height: auto;
        max-height: 8;
        padding: 0 1;
        border: round $warning;
        background: $surface;
        &.-on { display: block; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer('once')", N_("Allow once"), id="approval.once"),
        Binding("a", "answer('always')", N_("Always allow"), id="approval.always"),
        Binding("n,escape", "answer('deny')", N_("Deny"), id="approval.deny"),
    ]

    class Answered(Message):
        def __init__(self, request: ApprovalRequest, decision: Decision) -> None:
            super().__init__()
            self.request = request
            self.decision = decision

    def __init__(self, **kwargs: object) -> None:
        super().__init__(markup=False, **kwargs)  # type: ignore[arg-type]
        self.request: ApprovalRequest | None = None

    def ask(self, request: ApprovalRequest) -> None:
        self.request = request
        source = "" if request.tool.source == "builtin" else f" ({request.tool.source})"
        self.update(Content.assemble(
            (_("The model wants to call a tool{source}, step {step}:\n",
               source=source, step=request.step), "bold"),
            describe_call(request.call), "\n",
            (_("y allow once   a always allow this tool   n deny"), "$text-muted"),
        ))
        self.add_class("-on")
        self.focus()

    def clear(self) -> None:
        self.request = None
        self.remove_class("-on")

    def action_answer(self, decision: str) -> None:
        request = self.request
        if request is None:
            return
        chosen: Decision = "once" if decision == "once" else (
            "always" if decision == "always" else "deny")
        request.answer(chosen)
        self.clear()
        self.post_message(self.Answered(request, chosen))
