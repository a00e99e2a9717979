"""The app's own Messages: what its workers and its session post to the UI thread.

Widget-local messages live in their widget (``ReplyStreamer.Changed``, ``PromptInput.Send``);
these cross from the core (the ``ModelSession``, a reply being generated) to whoever shows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from tui.app.reply_job import ReplyJob
    from tui.app.widgets.tool_approval import ApprovalRequest
    from tui.prompting.context import TokenCounts
    from tui.session.model_session import SessionEvent
    from tui.session.turn import TurnOutcome


class SessionChanged(Message):
    """The model session loaded, failed to load or unloaded a model (posted from the model
    worker's thread, handled by the app)."""

    def __init__(self, event: SessionEvent) -> None:
        super().__init__()
        self.event = event


class ContextPlanned(Message):
    """Posted (by the chat's ReplyStreamer, bubbling to its screen and the app) when the
    prompt of a reply is built: what fills the context window, and what was left out."""

    def __init__(self, conversation_id: str, tokens: TokenCounts, n_ctx: int,
                 left_out: tuple[str, ...] = (), notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.tokens = tokens
        self.n_ctx = n_ctx
        self.left_out = left_out
        self.notes = notes


class ReplyFinished(Message):
    """Posted by the generation thread when a turn is over (done, stopped or failed)."""

    def __init__(self, job: ReplyJob, outcome: TurnOutcome) -> None:
        super().__init__()
        self.job = job
        self.outcome = outcome


class ToolApprovalNeeded(Message):
    """The model wants to call a tool that is not always allowed: ask the user."""

    def __init__(self, job: ReplyJob, request: ApprovalRequest) -> None:
        super().__init__()
        self.job = job
        self.request = request
