"""Streaming a reply into the chat log, and keeping the conversation's messages in the store.

The engine runs in a thread worker (group "reply") that only pushes text into the ReplyJob and
posts ReplyFinished; a 40 ms timer on the UI thread moves the text into the Markdown stream
(see LiveReply for how a long reply stays cheap). While a reply streams, the garbage collector's
full passes are held off (see gc_tuning) and paid once, shortly after the reply ends.

The store is used from the UI thread only: the user message on send, the reply as "partial" at
its first token, a checkpoint every few seconds, then the final status and figures. A failed
write is reported once per message and the chat goes on with the message kept in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

from tui.app import gc_tuning
from tui.app.prompt_builder import ContextPlanned, build_prompt, snapshot
from tui.app.reply_job import ReplyFinished, ReplyJob
from tui.app.widgets.chat_log import ChatLog
from tui.app.widgets.markdown_lite import segment_cut
from tui.engine.errors import EngineError, PromptTooLong
from tui.engine.protocol import Done, SamplingParams, TextDelta
from tui.prompting.templates import PromptingError
from tui.store import ConversationMeta, StoredMessage, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

FLUSH_S = 0.04
SEGMENT_LINES = 12
"""Lines the live Markdown tail holds before it is frozen at the next block boundary."""
CHECKPOINT_S = 3.0
SETTLE_S = 0.5
"""Idle time after a reply before the collector's deferred full pass."""


async def stop_stream(stream: MarkdownStream) -> None:
    """Stop a Markdown stream, even one whose task has not started yet (stopping that one
    at once would cancel the caller instead)."""
    await asyncio.sleep(0)
    await stream.stop()


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
        self.history: list[StoredMessage] = []
        self.job: ReplyJob | None = None
        self._leaving: set[ReplyJob] = set()
        """Replies stopped because the user left their conversation, not yet ended."""
        self._timer: Timer | None = None
        self._flush_lock = asyncio.Lock()
        self._unsaved = 0
        self.flush_log: list[tuple[int, float]] | None = None
        """When a list, each flush appends (tokens, UI thread CPU time at its start): the UI
        bench reads it to price each token."""

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
        with self.lmdesk.guard("Could not save the message"):
            return self.lmdesk.store.append_message(cid, role, content, **kwargs)
        self._unsaved += 1
        return StoredMessage(
            id=f"unsaved-{self._unsaved}", role=role, content=content, created=time.time(),
            model=kwargs.get("model"), stats=kwargs.get("stats"),
            status=kwargs.get("status", "done"), error=kwargs.get("error"),
        )

    def _replace(self, old: StoredMessage, new: StoredMessage) -> None:
        for index, message in enumerate(self.history):
            if message is old:
                self.history[index] = new
                return

    async def _drop_from(self, message_id: str) -> None:
        """Delete a message and every message after it (edit-and-resend)."""
        assert self.meta is not None
        index = next((i for i, m in enumerate(self.history) if m.id == message_id), None)
        if index is None:
            return
        for message in self.history[index:]:
            if not message.id.startswith("unsaved-"):
                with self.lmdesk.guard("Could not delete the old message"):
                    self.lmdesk.store.delete_message(self.meta.id, message.id)
            await self.log_view.remove_message(message.id)
        del self.history[index:]

    # -- streaming ---------------------------------------------------------------------------

    async def _start_reply(self) -> None:
        assert self.meta is not None
        app = self.lmdesk
        sampling = SamplingParams(
            temperature=app.settings.temperature, max_tokens=app.settings.max_tokens
        )
        sampling = app.profile_sampling(sampling)  # the conversation's model profile, if any
        request = snapshot(app.store, self.meta, self.history, sampling,
                           data_dir=app.paths.data_dir, n_ctx=app.settings.n_ctx)
        placeholder = StoredMessage(
            id="streaming", role="assistant", content="", created=time.time(),
            model=app.model_name, status="partial",
        )
        self.history.append(placeholder)
        view = await self.log_view.add_live(placeholder)
        job = ReplyJob(self.meta.id, (), request.sampling, app.model_name, view)
        job.request = request
        job.stream = Markdown.get_stream(view.markdown)
        self.job = job
        self.generating = True
        gc_tuning.hold()
        self._timer = self.set_interval(FLUSH_S, self._flush)
        self._generate(job)

    @work(thread=True, exclusive=True, group="reply", exit_on_error=False)
    def _generate(self, job: ReplyJob) -> None:
        """Runs in a thread: feed the engine's deltas into ``job``; never touches widgets."""
        done: Done | None = None
        try:
            engine = self.lmdesk.wait_for_engine(job.cancel_event)
            if engine is None:
                self.post_message(ReplyFinished(job, None))
                return
            if job.request is not None:
                try:
                    built = build_prompt(job.request, engine)
                except PromptingError as exc:  # ContextError: nothing is sent, nothing lost
                    job.context_error = str(exc)
                    self.post_message(ReplyFinished(job, None))
                    return
                job.messages, job.sampling = built.messages, built.sampling
                job.sources, job.notes = built.sources, built.notes
                self.post_message(ContextPlanned(
                    job.conversation_id, built.plan.tokens, built.n_ctx,
                    built.plan.left_out, tuple(built.notes),
                ))
            cancel_sent = False
            self.lmdesk.rates.start()  # the monitor's live tok/s
            for event in self.lmdesk.locked_generate(engine, job.messages, job.sampling,
                                                     job.cancel_event):
                if isinstance(event, TextDelta):
                    job.push(event.text, event.n_tokens)
                    self.lmdesk.rates.delta(event.n_tokens)
                elif isinstance(event, Done):
                    done = event
                if job.cancelled and not cancel_sent:
                    engine.cancel()
                    cancel_sent = True
            error = None if done is not None or job.cancelled else (
                "the engine stopped without finishing")
            self.post_message(ReplyFinished(job, done, error))
        except PromptTooLong as exc:
            self.post_message(ReplyFinished(
                job, done, f"{exc} Start a new conversation (ctrl+n) or shorten this one."
            ))
        except EngineError as exc:
            self.post_message(ReplyFinished(job, done, str(exc)))
        except Exception as exc:  # the app must not die: report it
            error = f"internal error: {type(exc).__name__}: {exc}"
            self.post_message(ReplyFinished(job, done, error))

    async def _flush(self) -> None:
        """Timer: move what arrived into the view. One at a time (it awaits the stream), and
        shielded: stopping the timer must not cut a flush in half."""

        async def locked() -> None:
            async with self._flush_lock:
                await self._flush_now()

        await asyncio.shield(locked())

    async def _flush_now(self) -> None:
        job = self.job
        if job is None or job.stream is None:
            return
        cpu = time.thread_time()
        text, tokens = job.take()
        if not text:
            return
        if self.flush_log is not None:
            self.flush_log.append((tokens, cpu))
        await self._write(job, text)
        if job.stored is None and not job.save_failed:
            stored = self._append("assistant", job.text, conversation_id=job.conversation_id,
                                  model=job.model, status="partial")
            if stored.id.startswith("unsaved-"):
                job.save_failed = True
            else:
                self._replace(job.view.message, stored)
                job.view.message = stored
                job.stored = stored
        elif job.stored is not None and time.monotonic() - job.last_checkpoint >= CHECKPOINT_S:
            job.last_checkpoint = time.monotonic()
            with self.lmdesk.guard("Could not checkpoint the reply"):
                self.lmdesk.store.update_message(
                    job.conversation_id, job.stored.id, content=job.text
                )
        rate = job.live_rate()
        job.view.set_progress(
            f"{job.model} · {job.tokens_shown} tokens" + (f" · {rate:.1f} tok/s" if rate else "")
        )
        if job.tokens_shown == tokens:
            self.update_status()

    async def _write(self, job: ReplyJob, text: str) -> None:
        """Stream ``text`` into the live tail. Once the tail is long enough, the text up to the
        last block boundary completes it and the whole tail is frozen: that text never goes
        through the Markdown widget, so a burst of tokens costs little more than a trickle."""
        assert job.stream is not None
        cut = segment_cut(job.segment, text, SEGMENT_LINES)
        if cut is not None:
            head, text = text[:cut], text[cut:]
            await stop_stream(job.stream)
            markdown = await job.view.freeze(job.segment + head, self.app.native_ansi_color)
            gc_tuning.hold()
            job.segment = ""
            job.stream = Markdown.get_stream(markdown)
        if text:
            job.segment += text
            await job.stream.write(text)

    async def leave_reply(self) -> None:
        """The open conversation is about to change (another one opened, a new one, this one
        deleted) while its reply streams: stop the reply and let go of its widgets. What it
        wrote is saved into its own conversation once the engine has stopped."""
        job = self.job
        if job is None:
            return
        async with self._flush_lock:  # no flush may be half-way through the widgets
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            job.detached = True
            job.cancel_event.set()
            engine = self.lmdesk.engine
            if engine is not None:
                engine.cancel()
            if job.stream is not None:
                await stop_stream(job.stream)
                job.stream = None
            self._leaving.add(job)
            self.job = None
        self.generating = False

    def _finish_detached(self, job: ReplyJob, done: Done | None, error: str | None) -> None:
        """Save a reply whose conversation is no longer shown (see ``leave_reply``)."""
        self._leaving.discard(job)
        job.take()
        text = done.text if done is not None and done.text else job.text
        reason = done.stats.stop_reason if done is not None else "cancelled"
        status = "error" if error or reason == "error" else (
            "done" if reason in ("stop", "length") else "stopped")
        stats = {**dataclasses.asdict(done.stats), "model": job.model} if done else None
        if stats is not None and job.sources:
            stats["sources"] = job.sources
        self.lmdesk.reply_done(job.model, done)
        if not text and job.stored is None:
            return
        try:
            title = self.lmdesk.store.get_conversation(job.conversation_id).title
        except StoreError:
            return  # the conversation was deleted: nothing to keep
        self._save_reply(job, text, status, stats, error)
        if status == "stopped":
            self.lmdesk.notify(
                f"The reply in “{title}” was stopped when you left it; what it wrote is kept.",
                timeout=6,
            )
        self.post_message(self.Changed(job.conversation_id))

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        event.stop()
        job = event.job
        if job in self._leaving:
            self._finish_detached(job, event.done, event.error or (
                event.done.error if event.done is not None else None))
            if self.meta is not None and self.meta.id == job.conversation_id:
                await self._show_saved(job)
            self.set_timer(SETTLE_S, self._settle)
            return
        if job is not self.job:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        async with self._flush_lock:
            await self._flush_now()
            if job.stream is not None:
                await stop_stream(job.stream)
        done = event.done
        error = event.error or (done.error if done is not None else None)
        text = job.text
        if done is not None and done.text:
            text = done.text
        reason = done.stats.stop_reason if done is not None else ("error" if error else "cancelled")
        status = "error" if error or reason == "error" else (
            "stopped" if reason == "cancelled" else "done"
        )
        stats = None
        if done is not None:
            stats = {**dataclasses.asdict(done.stats), "model": job.model}
            if self.lmdesk.profile is not None:
                stats["profile"] = self.lmdesk.profile.nickname
            if job.sources:
                stats["sources"] = job.sources
        self.lmdesk.reply_done(job.model, done)  # the monitor's rates, the model's usage
        self.job = None
        if not text and status == "stopped":
            self.history.remove(job.view.message)
            await self.log_view.remove_message(job.view.message.id)
        else:
            final = self._save_reply(job, text, status, stats, error)
            self._replace(job.view.message, final)
            await self.log_view.replace(job.view, final)
        self.generating = False
        self.set_timer(SETTLE_S, self._settle)
        if job.context_error:
            self.lmdesk.notify(job.context_error, title="The prompt does not fit",
                               severity="error", timeout=15)
        if error:
            self.lmdesk.notify(error, title="The reply failed", severity="error", timeout=10)
        self.post_message(self.Changed(job.conversation_id, stats))

    async def _show_saved(self, job: ReplyJob) -> None:
        """The user came back to a conversation before its stopped reply was saved: show
        the saved text in place of what was read from the store when it opened."""
        if job.stored is None:
            return
        for message in self.history:
            if message.id == job.stored.id:
                with self.lmdesk.guard("Could not read the reply"):
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
        error: str | None,
    ) -> StoredMessage:
        if job.stored is not None:
            with self.lmdesk.guard("Could not save the reply"):
                self.lmdesk.store.update_message(
                    job.conversation_id, job.stored.id, content=text, status=status,
                    stats=stats, error=error,
                )
            return dataclasses.replace(
                job.stored, content=text, status=status, stats=stats, error=error
            )
        return self._append(
            "assistant", text, conversation_id=job.conversation_id, model=job.model,
            stats=stats, status=status, error=error,
        )

    def save_before_exit(self) -> None:
        """The app is closing mid-reply: keep what was written, marked stopped."""
        jobs = [*self._leaving, *([self.job] if self.job is not None else [])]
        self._leaving.clear()
        self.job = None
        for job in jobs:
            job.cancel_event.set()
            job.take()
            if job.text:
                self._save_reply(job, job.text, "stopped", None, None)
