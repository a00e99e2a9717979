"""The chat: the log, a status line and the prompt. Sends prompts; edits, regenerates, copies.

Streaming the reply and saving messages live in ReplyStreamer (reply_stream.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from tui.app.widgets.chat_log import ChatLog
from tui.app.widgets.prompt_input import PromptInput
from tui.app.widgets.reply_stream import ReplyStreamer
from tui.store import ConversationMeta, StoredMessage

DEFAULT_TITLE = "New conversation"
TITLE_CHARS = 40
READ_ONLY_SEND = (
    "Read-only: another lmdesk holds the data folder, so nothing can be saved and sending is "
    "off. Browse, search and export work; close the other lmdesk to chat here."
)


def auto_title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatPane(ReplyStreamer):
    """The open conversation and the reply being written."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.editing: str | None = None

    def compose(self) -> ComposeResult:
        yield ChatLog(id="chat-log")
        yield Static(id="chat-status", markup=False)
        yield PromptInput(id="prompt")

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    def on_mount(self) -> None:
        self.update_status()

    # -- status line ---------------------------------------------------------------------------

    def update_status(self) -> None:
        app = self.lmdesk
        text = ""
        if self.job is not None:
            if app.model_state == "loading" and self.job.first_token_at is None:
                text = "Waiting for the model to load… (esc cancels)"
            elif self.job.thinking:
                text = "Thinking… (esc stops)"
            else:
                text = "Writing the reply… (esc stops)"
        elif self.editing is not None:
            text = "Editing your last prompt: Enter sends it again, esc cancels."
        elif app.read_only:
            text = "Read-only (another lmdesk is running): browsing, search and export only."
        elif app.model_state == "loading":
            text = f"Loading {app.model_name}… you can type now."
        elif app.model_state == "failed":
            text = f"{app.model_name} did not load: {app.model_error}"
        status = self.query_one("#chat-status", Static)
        status.update(Content(text))
        status.display = bool(text)

    def watch_generating(self) -> None:
        self.update_status()
        self.screen.refresh_bindings()

    # -- opening -------------------------------------------------------------------------------

    async def open(
        self, meta: ConversationMeta, history: list[StoredMessage], around: str | None = None
    ) -> None:
        await self.leave_reply()
        self.meta = meta
        self.history = history
        self.editing = None
        await self.log_view.show(history, around=around)
        self.prompt.set_history([m.content for m in history if m.role == "user"])
        self.update_status()

    # -- sending -------------------------------------------------------------------------------

    async def on_prompt_input_send(self, event: PromptInput.Send) -> None:
        event.stop()
        await self.send(event.text)

    async def send(self, text: str) -> bool:
        app = self.lmdesk
        if text.lstrip().startswith("/"):  # /remember, /template... (see library.py)
            if await app.library.slash_command(self, text):
                return False
            if text.lstrip().startswith("//"):
                text = text.lstrip()[1:]
        if self.job is not None:
            app.notify("A reply is still being written: esc stops it.", severity="warning")
            return False
        if app.read_only:
            app.notify(READ_ONLY_SEND, severity="warning", timeout=8)
            return False
        if self.meta is None or not text.strip():
            return False
        if self.editing is not None:
            await self._drop_from(self.editing)
            self.editing = None
        first = not any(m.role == "user" for m in self.history)
        user = self._append("user", text)
        self.history.append(user)
        await self.log_view.add(user)
        self.prompt.remember(text)
        self.prompt.clear()
        if first and self.meta.title == DEFAULT_TITLE:
            title = auto_title(text)
            with app.guard("Could not rename the conversation"):
                app.store.update_conversation(self.meta.id, title=title)
                self.meta.title = title
        self.post_message(self.Changed(self.meta.id))
        await self._start_reply()
        return True

    # -- stop, regenerate, edit ----------------------------------------------------------------

    def stop(self) -> bool:
        """Stop the reply being written (or leave editing). False when there was nothing."""
        if self.job is not None:
            self.lmdesk.session.cancel(self.job.cancel_event)
            return True
        if self.editing is not None:
            self.editing = None
            self.prompt.clear()
            self.update_status()
            return True
        return False

    def busy(self) -> bool:
        if self.job is not None:
            self.lmdesk.notify("A reply is still being written: esc stops it.", severity="warning")
            return True
        if self.lmdesk.read_only:
            self.lmdesk.notify(READ_ONLY_SEND, severity="warning", timeout=8)
            return True
        return self.meta is None

    async def regenerate(self) -> None:
        if self.busy():
            return
        assert self.meta is not None
        if self.history and self.history[-1].role == "assistant":
            await self._drop_from(self.history[-1].id)
        if not self.history or self.history[-1].role != "user":
            self.lmdesk.notify("Nothing to regenerate: send a prompt first.")
            return
        await self._start_reply()

    def edit_last(self) -> None:
        if self.busy():
            return
        last = next((m for m in reversed(self.history) if m.role == "user"), None)
        if last is None:
            self.lmdesk.notify("No prompt to edit yet.")
            return
        self.editing = last.id
        self.prompt.set_prompt(last.content)
        self.prompt.focus()
        self.update_status()

    # -- what to copy --------------------------------------------------------------------------

    def copy_source(self) -> StoredMessage | None:
        """The selected message when the log has focus, else the last reply."""
        log = self.log_view
        job = self.job
        if log.has_focus and log.selected is not None:
            selected = log.selected.message
            if job is not None and selected is job.view.message:
                return dataclasses.replace(selected, content=job.text_so_far)
            return selected
        for message in reversed(self.history):
            if message.role == "assistant":
                if job is not None and message is job.view.message:
                    return dataclasses.replace(message, content=job.text_so_far)
                if message.content:
                    return message
        return None
