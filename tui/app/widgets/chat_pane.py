"""The chat: the log, a status line and the prompt. Sends prompts; edits, regenerates, copies.

Streaming the reply and saving messages live in ReplyStreamer (reply_stream.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.app import ComposeResult
from textual.content import Content
from textual.widget import MountError

from tui.app.widgets.chat_log import ChatLog
from tui.app.widgets.prompt_input import PromptInput
from tui.app.widgets.reply_stream import ReplyStreamer
from tui.app.widgets.steady_static import SteadyStatic
from tui.app.widgets.tool_approval import ToolApproval
from tui.i18n import N_, _
from tui.store import ConversationMeta, ConversationTree, StoredMessage

DEFAULT_TITLE = "New conversation"
TITLE_CHARS = 40
READ_ONLY_SEND = (
    N_("Read-only: another lmdesk holds the data folder, so nothing can be saved and sending is "
       "off. Browse, search and export work; close the other lmdesk to chat here.")
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
        yield SteadyStatic(id="chat-status", markup=False)
        yield ToolApproval(id="tool-approval")
        yield PromptInput(id="prompt")

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    def focus_prompt(self) -> None:
        self.prompt.focus()

    def on_mount(self) -> None:
        self.update_status()

    # -- status line ---------------------------------------------------------------------------

    def update_status(self) -> None:
        app = self.lmdesk
        text = ""
        if self.job is not None:
            if app.model_state == "loading" and self.job.first_token_at is None:
                text = _("Waiting for the model to load… (esc cancels)")
            elif self.job.waiting is not None:
                text = (_("The model asks to run {name}: y once, a always, n deny (esc stops "
                          "the reply)", name=self.job.waiting.call.name))
            elif self.job.thinking:
                text = _("Thinking… (esc stops)")
            elif self.job.step:
                rounds = _("1 tool call") if self.job.step == 1 else _("{step} tool rounds",
                                                                    step=self.job.step)
                text = _("Writing the reply… {rounds} so far (esc stops)", rounds=rounds)
            else:
                text = _("Writing the reply… (esc stops)")
        elif self.editing is not None:
            text = (_("Editing a prompt: Enter sends it as a new version (the old one and what "
                      "followed it are kept: ←/→ on it), esc cancels."))
        elif app.read_only:
            text = _("Read-only (another lmdesk is running): browsing, search and export only.")
        elif app.model_state == "loading":
            text = _("Loading {model_name}… you can type now.", model_name=app.model_name)
        elif app.model_state == "failed":
            text = _("{model_name} did not load: {model_error}",
                     model_name=app.model_name, model_error=app.model_error)
        status = self.query_one("#chat-status", SteadyStatic)
        status.show(Content(text))
        status.display = bool(text)

    def watch_generating(self, generating: bool) -> None:
        self.update_status()
        self.screen.refresh_bindings()
        # a blinking cursor repaints the prompt twice a second: CPU taken from the model
        self.prompt.cursor_blink = not generating

    # -- opening -------------------------------------------------------------------------------

    async def open(
        self, meta: ConversationMeta, tree: ConversationTree, around: str | None = None
    ) -> None:
        """Show ``meta``'s branch shown in ``tree`` (a page around message ``around``)."""
        self.leave_reply()
        self.meta = meta
        self.conv_tree = tree
        self.editing = None
        await self.show_branch(tree.branch, around=around)
        self.prompt.set_history([m.content for m in self.history if m.role == "user"])
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
            app.notify(_("A reply is still being written: esc stops it."), severity="warning")
            return False
        if app.read_only:
            app.notify(_(READ_ONLY_SEND), severity="warning", timeout=8)
            return False
        if self.meta is None or not text.strip():
            return False
        parent = self.history[-1].id if self.history else None
        if self.editing is not None:
            # a new version of that prompt: the old one and all that followed it are kept
            index = next((i for i, m in enumerate(self.history) if m.id == self.editing), None)
            self.editing = None
            if index is not None:
                parent = self.history[index].parent
                await self.show_branch(self.history[:index])
        first = not any(m.role == "user" for m in self.history)
        user = self._append("user", text, parent=parent)
        self.history.append(user)
        self.refresh_tree()
        try:
            await self.log_view.add(user)
        except MountError:  # the app is closing (ctrl+q right after enter): the prompt is saved
            return True
        self.prompt.remember(text)
        self.prompt.clear()
        if first and self.meta.title == DEFAULT_TITLE:
            title = auto_title(text)
            with app.guard(_("Could not rename the conversation")):
                app.store.update_conversation(self.meta.id, title=title)
                self.meta.title = title
        self.post_message(self.Changed(self.meta.id))
        await self._start_reply()
        return True

    # -- stop, regenerate, edit ----------------------------------------------------------------

    def stop(self) -> bool:
        """Stop the reply being written (or leave editing). False when there was nothing."""
        if self.job is not None:
            self.lmdesk.session.cancel(self.job.cancel_event)  # a pending tool call: denied
            self.query_one(ToolApproval).clear()
            return True
        if self.editing is not None:
            self.editing = None
            self.prompt.clear()
            self.update_status()
            return True
        return False

    def busy(self) -> bool:
        if self.job is not None:
            self.lmdesk.notify(_("A reply is still being written: esc stops it."),
                               severity="warning")
            return True
        if self.lmdesk.read_only:
            self.lmdesk.notify(_(READ_ONLY_SEND), severity="warning", timeout=8)
            return True
        return self.meta is None

    def _selected(self) -> StoredMessage | None:
        """The message selected in the log (when the log has focus)."""
        log = self.log_view
        if log.has_focus and log.selected is not None:
            return log.selected.message
        return None

    async def regenerate(self) -> None:
        """Write the last reply again (or the selected one): the old reply stays beside the
        new one, as another version (←/→ on it)."""
        if self.busy():
            return
        selected = self._selected()
        target = selected if selected is not None and selected.role == "assistant" else (
            self.history[-1] if self.history and self.history[-1].role == "assistant"
            else None)
        index = len(self.history)
        if target is not None:
            index = next(i for i, m in enumerate(self.history) if m.id == target.id)
        if index == 0 or self.history[index - 1].role != "user":
            self.lmdesk.notify(_("Nothing to regenerate: send a prompt first."))
            return
        if index < len(self.history):
            await self.show_branch(self.history[:index])
        await self._start_reply()

    async def continue_reply(self) -> None:
        """Write more of the last reply, from where it stopped (no new prompt)."""
        if self.busy():
            return
        last = self.history[-1] if self.history else None
        if last is None or not last.can_continue or last.id.startswith("unsaved-"):
            self.lmdesk.notify(_("Only a reply that stopped early (esc, or its token limit) can "
                                 "be continued, and only the last one."))
            return
        await self._start_reply(continuing=last)

    def edit_last(self) -> None:
        """Edit the selected prompt (else the last one); sending makes it a new version."""
        if self.busy():
            return
        selected = self._selected()
        target = selected if selected is not None and selected.role == "user" else None
        if target is None:
            target = next((m for m in reversed(self.history) if m.role == "user"), None)
        if target is None:
            self.lmdesk.notify(_("No prompt to edit yet."))
            return
        self.editing = target.id
        self.prompt.set_prompt(target.content)
        self.prompt.focus()
        self.update_status()

    async def switch_version(self, step: int) -> None:
        """Show the previous (-1) or next (1) version of the selected message, and the
        conversation as it went on from it; kept for the next time it is opened."""
        if self.job is not None:
            self.lmdesk.notify(_("A reply is still being written: esc stops it."),
                               severity="warning")
            return
        selected = self._selected()
        if selected is None or self.meta is None:
            self.lmdesk.notify(_("Select a message first: f4, then ↑/↓."))
            return
        ids = [m.id for m in self.conv_tree.siblings(selected.id)]
        if len(ids) < 2:
            self.lmdesk.notify(_("This message has no other version."))
            return
        at = ids.index(selected.id) + step
        if not 0 <= at < len(ids):
            return
        target = ids[at]
        self.conv_tree = self.conv_tree.show(target)
        if not self.lmdesk.read_only:
            with self.lmdesk.guard(_("Could not keep the branch shown")):
                self.conv_tree = self.lmdesk.store.show(self.meta.id, target)
        await self.show_branch(self.conv_tree.branch, around=target)
        self.prompt.set_history([m.content for m in self.history if m.role == "user"])

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
