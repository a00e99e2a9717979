"""Streaming a reply into the chat log, and keeping the conversation's messages in the store.

The engine runs in a thread worker (group "reply") that only pushes text into the ReplyJob and
posts ReplyFinished; a timer on the UI thread moves the text into the live end when the
frame pacer says so: at most 25 times a second whatever the token rate, less often when the
frames cost more than the app's CPU budget (see FramePacer), so the UI's cost per second does
not grow with the model's speed (see LiveReply for how a long reply stays cheap). While a
reply streams, the garbage collector's full passes are held off (see gc_tuning) and paid once,
shortly after the reply ends.

The store is used from the UI thread only: the user message on send, the reply as "partial" at
its first token, a checkpoint every few seconds, then the final status and figures. A failed
write is reported once per message and the chat goes on with the message kept in memory.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import MountError

from tui.app import gc_tuning
from tui.app.frame_pacer import FASTEST_S, FramePacer
from tui.app.messages import ContextPlanned, ReplyFinished, ToolApprovalNeeded
from tui.app.reply_job import ReplyJob
from tui.app.widgets.chat_log import ChatLog
from tui.app.widgets.markdown_lite import segment_cut
from tui.app.widgets.tool_approval import ToolApproval
from tui.display import count
from tui.i18n import _, format_number
from tui.session.request import snapshot
from tui.session.turn import ToolUse, TurnOutcome, run_turn
from tui.store import ConversationMeta, ConversationTree, StoredMessage, StoreError
from tui.store.parts import Part, ReasoningPart, TextPart, ToolCallPart, continued_parts

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

FLUSH_S = FASTEST_S
SEGMENT_LINES = 12
"""Lines the live end holds before it is frozen at the next block boundary."""
CHECKPOINT_S = 3.0
SETTLE_S = 0.5
"""Idle time after a reply before the collector's deferred full pass."""


def versions(tree: ConversationTree, branch: list[StoredMessage]) -> dict[str, tuple[int, int]]:
    """(n, of) for each message of ``branch`` that has other versions."""
    out = {}
    for message in branch:
        n, of = tree.position(message.id)
        if of > 1:
            out[message.id] = (n, of)
    return out


class ReplyStreamer(Vertical):
    """The open conversation's messages, and the reply being written into its log."""

    generating: reactive[bool] = reactive(False)

    class Changed(Message):
        """The conversation changed in a way the sidebar or the monitor shows."""

        def __init__(self, conversation_id: str, stats: dict[str, Any] | None = None) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.stats = stats

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meta: ConversationMeta | None = None
        self.conv_tree = ConversationTree(())
        """Every message of the open conversation, every branch (as last read)."""
        self.history: list[StoredMessage] = []
        """The branch shown: what the log holds and what the next reply answers."""
        self.job: ReplyJob | None = None
        self._leaving: set[ReplyJob] = set()
        """Replies stopped because the user left their conversation, not yet ended."""
        self._timer: Timer | None = None
        self.pacer = FramePacer()
        self._unsaved = 0

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def log_view(self) -> ChatLog:
        return self.query_one(ChatLog)

    def update_status(self) -> None:
        """Show what is going on (the chat pane has a status line)."""

    # -- the conversation in the store (UI thread) ---------------------------------------------

    def _append(self, role: str, content: str, *, conversation_id: str | None = None,
                **kwargs: Any) -> StoredMessage:
        """Save a message into ``conversation_id`` (default: the open one)."""
        cid = conversation_id
        if cid is None:
            assert self.meta is not None
            cid = self.meta.id
        with self.lmdesk.guard(_("Could not save the message")):
            return self.lmdesk.store.append_message(cid, role, content, **kwargs)
        self._unsaved += 1
        return StoredMessage(
            id=f"unsaved-{self._unsaved}", role=role, content=content, created=time.time(),
            model=kwargs.get("model"), stats=kwargs.get("stats"),
            status=kwargs.get("status", "done"), error=kwargs.get("error"),
            parts=kwargs.get("parts", ()),
        )

    async def show_stored_branch(self, around: str | None = None) -> None:
        """Show the branch the store shows (after a change that may have moved it)."""
        if self.meta is None:
            return
        with self.lmdesk.guard(_("Could not read the conversation")):
            self.conv_tree = self.lmdesk.store.tree(self.meta.id)
        branch = self.conv_tree.branch
        if [m.id for m in branch] != [m.id for m in self.history] or around is not None:
            await self.show_branch(branch, around=around)

    async def show_branch(self, branch: list[StoredMessage], around: str | None = None
                          ) -> None:
        self.history = list(branch)
        self.log_view.versions = versions(self.conv_tree, self.history)
        await self.log_view.show(self.history, around=around)

    def _replace(self, old: StoredMessage, new: StoredMessage) -> None:
        for index, message in enumerate(self.history):
            if message is old:
                self.history[index] = new
                return

    def refresh_tree(self) -> None:
        """Read the conversation's tree again (after a save) and redraw the version counts."""
        if self.meta is None:
            return
        with self.lmdesk.guard(_("Could not read the conversation")):
            self.conv_tree = self.lmdesk.store.tree(self.meta.id)
        self.log_view.set_versions(versions(self.conv_tree, self.history))

    # -- streaming ---------------------------------------------------------------------------

    async def _start_reply(self, continuing: StoredMessage | None = None) -> None:
        """Answer the branch shown (its last message is the prompt), or write more of
        ``continuing``, its last message, a reply that stopped early."""
        assert self.meta is not None
        app = self.lmdesk
        sampling, notes = app.reply_sampling(self.meta)
        for note in notes:
            app.notify(note, severity="warning")
        # the request is the branch shown: the window and the KV cache follow it
        request = snapshot(app.store, self.meta, self.history, sampling,
                           data_dir=app.paths.data_dir, n_ctx=app.settings.n_ctx)
        if continuing is None:
            parent = self.history[-1].id if self.history else None
            placeholder = StoredMessage(
                id="streaming", role="assistant", content="", created=time.time(),
                model=app.model_name, status="partial", parent=parent,
            )
            self.history.append(placeholder)
        else:
            parent = continuing.parent
        try:
            view = await (self.log_view.add_live(placeholder) if continuing is None
                          else self.log_view.live_in_place(continuing))
        except MountError:  # the app is closing (ctrl+q right after enter): the prompt is saved
            return
        job = ReplyJob(self.meta.id, app.model_name, view, request, self.post_message,
                       app.rates.delta, parent_id=parent, continuing=continuing,
                       stored=continuing,
                       tool_names=self.meta.options.tools if continuing is None else ())
        if continuing is not None:
            job.shown.append(continuing.content)
            self._write(job, continuing.content)
        self.job = job
        self.generating = True
        gc_tuning.hold()
        self.pacer.start()
        self._timer = self.set_timer(FLUSH_S, self._flush)
        self._generate(job)

    @work(thread=True, exclusive=True, group="reply", exit_on_error=False)
    def _generate(self, job: ReplyJob) -> None:
        """Runs in a thread: the turn, its pieces into ``job``; never touches widgets."""
        app = self.lmdesk
        app.rates.start()  # the monitor's live tok/s
        use, notes = self._tool_use(job) if job.tool_names else (None, [])
        outcome = run_turn(app.session, job.request, job, job.cancel_event, use)
        outcome.notes[:0] = notes
        self.post_message(ReplyFinished(job, outcome))

    def _tool_use(self, job: ReplyJob) -> tuple[ToolUse | None, list[str]]:
        """The conversation's tools (MCP servers start here, off the UI thread) and the job
        as their approver; a tool that cannot be had is a note, not a failed reply."""
        app = self.lmdesk
        assert self.meta is not None
        tools, problems = app.tool_box(self.meta).resolve(job.tool_names)
        if not tools:
            return None, problems

        def remember(name: str) -> None:
            app.call_from_thread(lambda: app.set_always_allowed_tools(
                [*app.always_allowed_tools(), name]))

        return ToolUse(tools, job.approve, set(app.always_allowed_tools()),
                       on_always=remember), problems

    def on_tool_approval_needed(self, event: ToolApprovalNeeded) -> None:
        """Ask the user about a call (the generation thread waits for the answer)."""
        event.stop()
        if event.job is not self.job:  # a reply being left: nothing more runs for it
            event.request.answer("deny")
            return
        self.query_one(ToolApproval).ask(event.request)
        self.update_status()

    def on_tool_approval_answered(self, event: ToolApproval.Answered) -> None:
        event.stop()
        self.update_status()
        self.focus_prompt()

    def focus_prompt(self) -> None:
        """Put the cursor back in the prompt (the chat pane has one)."""

    def _flush(self) -> None:
        """Timer: move what arrived into the view, then set the timer again for when the pacer
        wants the next frame (a timer ticking faster than the frames wakes the UI for nothing).
        A flush awaits nothing, so nothing (a stop, the reply left) can come half-way through
        it."""
        timer = self._timer
        if self.pacer.due():
            self._flush_now()
        if timer is not None and self._timer is timer:  # not stopped or replaced meanwhile
            self._timer = self.set_timer(self.pacer.wait_s(), self._flush)

    def _flush_now(self) -> None:
        job = self.job
        if job is None or job.detached:
            return
        thought_before = job.reasoning_tokens
        steps_before = len(job.steps_shown)
        text, tokens = job.take()
        if len(job.steps_shown) != steps_before:
            job.view.set_steps(job.steps_shown)
            self.update_status()
        if not text and job.reasoning_tokens == thought_before:
            return
        if job.reasoning_tokens != thought_before or (text and job.reasoning_tokens):
            job.view.set_reasoning(job.reasoning_so_far, job.reasoning_tokens,
                                   job.reasoning_seconds(), done=bool(job.shown))
        if text:
            self._write(job, text)
        if job.stored is None and not job.save_failed:
            stored = self._append("assistant", job.text_so_far,
                                  conversation_id=job.conversation_id, model=job.model,
                                  status="partial", parts=self._live_parts(job),
                                  parent=job.parent_id)
            if stored.id.startswith("unsaved-"):
                job.save_failed = True
            else:
                self._replace(job.view.message, stored)
                job.view.message = stored
                job.stored = stored
        elif job.stored is not None and time.monotonic() - job.last_checkpoint >= CHECKPOINT_S:
            job.last_checkpoint = time.monotonic()
            with self.lmdesk.guard(_("Could not checkpoint the reply")):
                self.lmdesk.store.update_message(
                    job.conversation_id, job.stored.id, content=job.text_so_far,
                    parts=self._live_parts(job),
                )
        if job.shown:
            rate = job.live_rate()
            job.view.set_progress(f"{job.model} · {count(job.tokens_shown, 'token')}"
                                  + (f" · {format_number(rate, 1)} tok/s" if rate else ""))
        if job.tokens_shown == tokens or (job.reasoning_tokens and not job.shown):
            self.update_status()

    @staticmethod
    def _live_parts(job: ReplyJob) -> tuple[Part, ...]:
        """The parts of a reply still being written (its reasoning so far, kept apart, and
        the tool calls made so far)."""
        parts: list[Part] = []
        if job.reasoning_tokens:
            parts.append(ReasoningPart(job.reasoning_so_far, job.reasoning_tokens,
                                       round(job.reasoning_seconds(), 3)))
        for _step, call, result in job.steps_shown:
            parts.append(ToolCallPart(call.id, call.name, call.arguments))
            parts.append(result)
        if job.continuing is not None:
            return continued_parts(job.continuing.parts, parts, job.text_so_far)
        if parts and job.shown:
            parts.append(TextPart(job.text_so_far))
        return tuple(parts)

    def _write(self, job: ReplyJob, text: str) -> None:
        """Stream ``text`` into the live end. Once the live end is long enough, the text up to
        the last block boundary completes it and all of it is frozen, so the live end parsed at
        each update stays short and a burst of tokens costs little more than a trickle."""
        cut = segment_cut(job.segment, text, SEGMENT_LINES)
        if cut is not None:
            head, text = text[:cut], text[cut:]
            job.view.freeze(job.segment + head, self.app.native_ansi_color)
            gc_tuning.hold()
            job.segment = ""
        job.segment += text
        job.view.body.show(job.segment)

    def leave_reply(self) -> None:
        """The open conversation is about to change (another one opened, a new one, this one
        deleted) while its reply streams: stop the reply and let go of its widgets. What it
        wrote is saved into its own conversation once the engine has stopped."""
        job = self.job
        if job is None:
            return
        # the job changes hands at once: a ReplyFinished handled next must find it among the
        # replies being left
        job.detached = True
        self._leaving.add(job)
        self.job = None
        self.lmdesk.session.cancel(job.cancel_event)
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.generating = False

    def _ending(self, job: ReplyJob, outcome: TurnOutcome) -> tuple[str, str, tuple[Part, ...]]:
        """(text, status, parts) of a finished turn, from what the engine or the UI saw."""
        job.take()
        text = job.prefix + outcome.text if outcome.text else job.text_so_far
        if job.continuing is not None:
            parts = continued_parts(job.continuing.parts, outcome.parts, text) \
                if outcome.parts else self._live_parts(job)
        else:
            parts = outcome.parts or self._live_parts(job)
        reason = outcome.done.stats.stop_reason if outcome.done is not None else (
            "error" if outcome.error else "cancelled")
        status = "error" if outcome.error or reason == "error" else (
            "stopped" if reason == "cancelled" else "done")
        return text, status, parts

    def _finish_detached(self, job: ReplyJob, outcome: TurnOutcome) -> None:
        """Save a reply whose conversation is no longer shown (see ``leave_reply``)."""
        self._leaving.discard(job)
        text, status, parts = self._ending(job, outcome)
        self.lmdesk.reply_done(outcome)
        if not text and not parts and job.stored is None:
            return
        try:
            title = self.lmdesk.store.get_conversation(job.conversation_id).title
        except StoreError:
            return  # the conversation was deleted: nothing to keep
        self._save_reply(job, text, status, outcome.stats(), outcome.error, parts)
        if status == "stopped":
            self.lmdesk.notify(
                _("The reply in “{title}” was stopped when you left it; what it wrote is kept.",
                  title=title),
                timeout=6,
            )
        self.post_message(self.Changed(job.conversation_id))

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        event.stop()
        job, outcome = event.job, event.outcome
        if job in self._leaving:
            self._finish_detached(job, outcome)
            if self.meta is not None and self.meta.id == job.conversation_id:
                await self._show_saved(job)
            self.set_timer(SETTLE_S, self._settle)
            return
        if job is not self.job:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._flush_now()
        text, status, parts = self._ending(job, outcome)
        stats = outcome.stats()
        self.lmdesk.reply_done(outcome)  # the monitor's rates, the model's usage
        self.job = None
        if not text and not parts and status == "stopped":
            self.history.remove(job.view.message)
            await self.log_view.remove_message(job.view.message.id)
            await self.show_stored_branch()  # a regenerated reply stopped: the old one again
        else:
            final = self._save_reply(job, text, status, stats, outcome.error, parts)
            self._replace(job.view.message, final)
            self.refresh_tree()
            await self.log_view.replace(job.view, final)
        self.generating = False
        self.set_timer(SETTLE_S, self._settle)
        if outcome.context_error:
            self.lmdesk.notify(outcome.context_error, title=_("The prompt does not fit"),
                               severity="error", timeout=15)
        if outcome.error:
            self.lmdesk.notify(outcome.error, title=_("The reply failed"), severity="error",
                               timeout=10)
        for note in outcome.notes:
            self.lmdesk.notify(note, title=_("Tools"), severity="warning", timeout=10)
        self.query_one(ToolApproval).clear()
        self.post_message(self.Changed(job.conversation_id, stats))

    async def _show_saved(self, job: ReplyJob) -> None:
        """The user came back to a conversation before its stopped reply was saved: show
        the saved text in place of what was read from the store when it opened."""
        if job.stored is None:
            return
        for message in self.history:
            if message.id == job.stored.id:
                with self.lmdesk.guard(_("Could not read the reply")):
                    fresh = next(m for m in self.lmdesk.store.messages(job.conversation_id)
                                 if m.id == message.id)
                    view = self.log_view.view_for(message.id)
                    self._replace(message, fresh)
                    if view is not None:
                        await self.log_view.replace(view, fresh)
                return

    def on_context_planned(self, event: ContextPlanned) -> None:
        """Dim the messages outside the window (the event bubbles on to the monitor)."""
        if self.meta is not None and event.conversation_id == self.meta.id:
            self.log_view.mark_outside(event.left_out)

    def _settle(self) -> None:
        if self.job is None:
            gc_tuning.settle()

    def _save_reply(
        self, job: ReplyJob, text: str, status: str, stats: dict[str, Any] | None,
        error: str | None, parts: tuple[Part, ...] = (),
    ) -> StoredMessage:
        if job.stored is not None:
            with self.lmdesk.guard(_("Could not save the reply")):
                self.lmdesk.store.update_message(
                    job.conversation_id, job.stored.id, content=text, status=status,
                    stats=stats, error=error, parts=parts,
                )
            return dataclasses.replace(
                job.stored, content=text, status=status, stats=stats, error=error, parts=parts,
            )
        return self._append(
            "assistant", text, conversation_id=job.conversation_id, model=job.model,
            stats=stats, status=status, error=error, parts=parts, parent=job.parent_id,
        )

    def save_before_exit(self) -> None:
        """The app is closing mid-reply: keep what was written, marked stopped."""
        jobs = [*self._leaving, *([self.job] if self.job is not None else [])]
        self._leaving.clear()
        self.job = None
        for job in jobs:
            job.cancel_event.set()
            job.take()
            if job.text_so_far or job.reasoning_tokens:
                self._save_reply(job, job.text_so_far, "stopped", None, None,
                                 self._live_parts(job))
