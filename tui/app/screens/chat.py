"""The main screen: conversations on the left, the chat, the monitor on the right."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList

from tui.app import gc_tuning, keymap
from tui.app.screens.confirm import ConfirmScreen
from tui.app.screens.search import SearchScreen
from tui.app.screens.system_prompt import SystemPromptScreen
from tui.app.screens.text_input import TextInputScreen
from tui.app.transfer import (
    ask_import,
    export_conversation,
    export_dir,
    import_conversation,
    slug,
)
from tui.app.widgets.chat_pane import READ_ONLY_SEND, ChatPane
from tui.app.widgets.markdown_lite import warm_highlighting
from tui.app.widgets.message_view import LiveReply, MessageView, code_blocks
from tui.app.widgets.monitor_panel import MonitorPanel, reply_figures
from tui.app.widgets.sidebar import ConversationList, Sidebar
from tui.i18n import _, n_
from tui.store import ConversationMeta, SearchHit, StoredMessage, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = list(keymap.bindings("chat"))

    def __init__(self) -> None:
        super().__init__(id="chat-screen")
        self.meta: ConversationMeta | None = None

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="body"):
            yield Sidebar(id="sidebar")
            yield ChatPane(id="chat")
            yield MonitorPanel(id="monitor")
        yield Footer()

    @property
    def pane(self) -> ChatPane:
        return self.query_one(ChatPane)

    @property
    def conversations(self) -> ConversationList:
        return self.query_one(ConversationList)

    _followed_at_start = False

    async def on_mount(self) -> None:
        app = self.lmdesk
        monitor = self.query_one(MonitorPanel)
        monitor.model_name = app.model_label
        self.watch(app, "model_state", self._model_state_changed)
        cid = None
        with app.guard(_("Could not read the conversations")):
            cid = app.store.last_conversation_id()
        if cid is not None:
            await self.open_conversation(cid)
        if self.meta is None:
            await self.new_conversation(quiet=True)
        self.pane.prompt.focus()
        self.call_after_refresh(app.mark_first_frame)
        self.call_after_refresh(self.run_worker, warm_highlighting, thread=True,
                                group="warm-highlighting", exit_on_error=False)

    def _model_state_changed(self, state: str) -> None:
        monitor = self.query_one(MonitorPanel)
        monitor.load_state = state
        monitor.model_name = self.lmdesk.model_label
        info = self.lmdesk.engine_info
        if info is not None:
            monitor.n_ctx = info.n_ctx
        self.pane.update_status()
        self._update_titles()
        if state == "ready" and not self._followed_at_start and self.meta is not None:
            # the conversation opened while the start-up model loaded: now it may take its own
            self._followed_at_start = True
            self._follow_model(self.meta)

    def _update_titles(self) -> None:
        app = self.lmdesk
        mark = app.remote_mark()
        parts = [f"{app.model_name} {mark}" if mark else app.model_name]
        if self.meta is not None:
            parts.append(self.meta.title)
        if app.read_only:
            parts.append("READ-ONLY")
        self.sub_title = " · ".join(parts)
        app.sub_title = self.sub_title

    # -- conversations -------------------------------------------------------------------------

    def refresh_sidebar(self) -> list[ConversationMeta]:
        metas: list[ConversationMeta] = []
        with self.lmdesk.guard(_("Could not list the conversations")):
            metas = self.lmdesk.store.list_conversations()
        self.conversations.set_conversations(metas, self.meta.id if self.meta else None)
        return metas

    async def open_conversation(self, cid: str, around: str | None = None) -> bool:
        """Open a conversation on its branch shown, or on the branch holding message
        ``around`` (a search result in another branch: that branch is shown from now on)."""
        store = self.lmdesk.store
        try:
            meta = store.get_conversation(cid)
            tree = store.tree(cid)
        except StoreError as exc:
            self.lmdesk.notify(_("Could not open the conversation: {exc}",
                                 exc=exc), severity="error")
            return False
        if around is not None and around in tree and around not in {m.id for m in tree.branch}:
            tree = tree.show(around)
            if not self.lmdesk.read_only:
                with self.lmdesk.guard(_("Could not keep the branch shown")):
                    tree = store.show(cid, around)
        self.meta = meta
        self._follow_model(meta)
        await self.pane.open(meta, tree, around=around)
        self.refresh_sidebar()
        self._update_titles()
        self.lmdesk.show_new_notices()
        history = self.pane.history
        last = next((m for m in reversed(history) if m.role == "assistant" and m.stats), None)
        self._show_stats(last.stats if last is not None else None)
        self.set_timer(1.0, self._settle)
        return True

    def _settle(self) -> None:
        if self.pane.job is None:
            gc_tuning.settle()

    def _follow_model(self, meta: ConversationMeta) -> None:
        """A conversation switched to another model (in the model switcher) uses it again."""
        self.lmdesk.follow_conversation(meta)

    async def new_conversation(self, *, quiet: bool = False) -> None:
        app = self.lmdesk
        if app.read_only:
            if not quiet:
                app.notify(READ_ONLY_SEND, severity="warning")
            self.refresh_sidebar()
            self._update_titles()
            return
        if self.meta is not None and not self.pane.history:
            self.pane.prompt.focus()
            return
        with app.guard(_("Could not create a conversation")):
            meta = app.store.create_conversation(
                system_prompt=app.settings.system_prompt, model=app.model_name
            )
            await self.open_conversation(meta.id)
        self.pane.prompt.focus()

    def _target_id(self) -> str | None:
        """The highlighted conversation when the sidebar has focus, else the open one."""
        if self.conversations.has_focus and self.conversations.highlighted_id:
            return self.conversations.highlighted_id
        return self.meta.id if self.meta else None

    def _writable(self) -> bool:
        if self.lmdesk.read_only:
            self.lmdesk.notify(READ_ONLY_SEND, severity="warning")
            return False
        return True

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "conversations" and event.option.id:
            event.stop()
            if self.meta is None or event.option.id != self.meta.id:
                await self.open_conversation(event.option.id)
            self.pane.prompt.focus()

    def on_reply_streamer_changed(self, event: ChatPane.Changed) -> None:
        event.stop()
        self.refresh_sidebar()
        self._update_titles()
        if event.stats:
            self._show_stats(event.stats)

    def _show_stats(self, stats: dict[str, Any] | None) -> None:
        """The monitor shows the last reply's speed and the context it filled."""
        monitor = self.query_one(MonitorPanel)
        stats = reply_figures(stats)  # a compare run: the app's model's figures
        if not stats:
            monitor.tokens_per_s = monitor.ttft_s = monitor.ctx_used = None
            monitor.reasoning_tokens = monitor.answer_tokens = None
            return
        thought = int(stats.get("reasoning_tokens", 0) or 0)
        monitor.reasoning_tokens = thought or None
        monitor.answer_tokens = int(stats.get("generated_tokens", 0)) - thought
        monitor.tokens_per_s = float(stats.get("generation_tokens_per_s", 0.0))
        monitor.ttft_s = float(stats.get("time_to_first_token_s", 0.0))
        monitor.ctx_used = int(stats.get("prompt_tokens", 0)) + int(
            stats.get("generated_tokens", 0)
        )

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.pane.job is not None or self.pane.editing is not None
        return True

    async def action_new_conversation(self) -> None:
        await self.new_conversation()

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display
        if not sidebar.display and sidebar.has_focus_within:
            self.pane.prompt.focus()

    def action_stop(self) -> None:
        self.pane.stop()

    async def action_regenerate(self) -> None:
        await self.pane.regenerate()

    def action_edit_last(self) -> None:
        self.pane.edit_last()

    async def action_continue_reply(self) -> None:
        await self.pane.continue_reply()

    async def action_sibling(self, step: int) -> None:
        await self.pane.switch_version(step)

    def _message_target(self) -> StoredMessage | None:
        """The selected message when the log has focus, else the last one shown."""
        log = self.pane.log_view
        if log.has_focus and log.selected is not None:
            return log.selected.message
        return self.pane.history[-1] if self.pane.history else None

    async def action_fork_conversation(self) -> None:
        """A new conversation with the history up to the selected (else last) message."""
        target = self._message_target()
        if self.meta is None or not self._writable() or self.pane.busy():
            return
        if target is None or target.id.startswith(("unsaved-", "streaming")):
            self.lmdesk.notify(_("Nothing to fork yet: send a prompt first."))
            return
        with self.lmdesk.guard(_("Could not fork the conversation")):
            meta = self.lmdesk.store.fork(self.meta.id, target.id)
            await self.open_conversation(meta.id)
            self.lmdesk.notify(_("Forked into “{title}” ({message_count} messages).",
                                 title=meta.title, message_count=meta.message_count))

    def action_delete_message(self) -> None:
        """Delete the selected message and everything after it, in every branch (asks)."""
        log = self.pane.log_view
        target = log.selected.message if log.has_focus and log.selected is not None else None
        if self.meta is None or not self._writable() or self.pane.busy():
            return
        if target is None or target.id.startswith(("unsaved-", "streaming")):
            self.lmdesk.notify(_("Select a message to delete first: f4, then ↑/↓."))
            return
        cid = self.meta.id
        later = len(self.pane.conv_tree.subtree(target.id)) - 1

        async def delete(yes: bool | None) -> None:
            if not yes or self.meta is None or self.meta.id != cid:
                return
            with self.lmdesk.guard(_("Could not delete the message")):
                gone = self.lmdesk.store.delete_subtree(cid, target.id)
                await self.pane.show_stored_branch()
                self.pane.refresh_tree()
                self.lmdesk.notify(n_("Deleted {count} message.", "Deleted {count} messages.",
                                     len(gone)))
                self.refresh_sidebar()

        self.app.push_screen(ConfirmScreen(_("Delete message"), n_(
            "Delete this message and the {count} message after it (in every branch)?",
            "Delete this message and the {count} messages after it (in every branch)?",
            later) if later else _("Delete this message?")),
                             delete)

    def action_focus_prompt(self) -> None:
        self.pane.prompt.focus()

    def action_focus_log(self) -> None:
        self.pane.log_view.focus()

    def action_toggle_reasoning(self) -> None:
        """Show or hide the reasoning of the selected reply (else of the last one that has
        any, the one being written included)."""
        log = self.pane.log_view
        views = [log.selected] if log.has_focus and log.selected is not None else list(
            reversed(log.views()))
        for view in views:
            if isinstance(view, MessageView | LiveReply) and view.toggle_reasoning():
                return
        self.lmdesk.notify(_("That reply has no reasoning or tool calls.") if log.has_focus
                           else _("No reply here has reasoning or tool calls."))

    def action_toggle_thinking(self) -> None:
        """Thinking on or off for this conversation (a reasoning model's budget: its default
        or 0, where the model is asked to answer directly)."""
        if self.meta is None or not self._writable():
            return
        off = self.meta.options.reasoning_budget == 0
        with self.lmdesk.guard(_("Could not change thinking for this conversation")):
            new = self.lmdesk.store.update_options(self.meta.id,
                                                   reasoning_budget=None if off else 0)
            self.lmdesk.conversation_options_changed(self.meta.id, new.options)
            self.lmdesk.notify(_("Thinking on in this conversation.") if off else
                               _("Thinking off in this conversation: reasoning models are asked "
                                 "to answer directly."))

    async def action_load_earlier(self) -> None:
        if not await self.pane.log_view.load_earlier():
            self.lmdesk.notify(_("All messages are shown."))

    def action_models(self) -> None:
        from tui.app.screens.models import ModelsScreen

        self.app.push_screen(ModelsScreen())

    def action_toggle_monitor(self) -> None:
        self.query_one(MonitorPanel).toggle()

    def action_copy_message(self) -> None:
        message = self.pane.copy_source()
        if message is None or not message.content:
            self.lmdesk.notify(_("Nothing to copy yet."))
            return
        self.lmdesk.copy_to_clipboard(message.content)
        who = _("your prompt") if message.role == "user" else _("the reply")
        self.lmdesk.notify(_("Copied {who} ({count} characters).",
                             who=who, count=len(message.content)))

    def action_copy_code(self, number: int | None = None) -> None:
        message = self.pane.copy_source()
        blocks = code_blocks(message.content) if message is not None else []
        if not blocks:
            self.lmdesk.notify(_("That message has no code block."))
            return
        if number is None and len(blocks) == 1:
            number = 1
        if number is None:
            def chosen(value: str | None) -> None:
                if value is not None:
                    if value.isdigit():
                        self._copy_block(blocks, int(value))
                    else:
                        self.lmdesk.notify(_("{value!r} is not a number.",
                                             value=value), severity="warning")

            self.app.push_screen(
                TextInputScreen(_("Copy code block"), hint=_("A number from 1 to {count}.",
                                                          count=len(blocks))),
                chosen,
            )
            return
        self._copy_block(blocks, number)

    def _copy_block(self, blocks: list[str], number: int) -> None:
        if not 1 <= number <= len(blocks):
            self.lmdesk.notify(_("There is no code block [{number}] (1 to {count}).",
                                 number=number, count=len(blocks)),
                               severity="warning")
            return
        self.lmdesk.copy_to_clipboard(blocks[number - 1])
        self.lmdesk.notify(_("Copied code block [{number}].", number=number))

    def action_system_prompt(self) -> None:
        if self.meta is None or not self._writable():
            return
        meta = self.meta

        def save(text: str | None) -> None:
            if text is None or text == meta.system_prompt:
                return
            with self.lmdesk.guard(_("Could not save the system prompt")):
                self.lmdesk.store.update_conversation(meta.id, system_prompt=text)
                meta.system_prompt = text
                self.lmdesk.notify(_("System prompt saved: the next reply uses it."))

        self.app.push_screen(SystemPromptScreen(meta.system_prompt), save)

    def action_rename_conversation(self) -> None:
        cid = self._target_id()
        if cid is None or not self._writable():
            return
        title = ""
        with self.lmdesk.guard(_("Could not read the conversation")):
            title = self.lmdesk.store.get_conversation(cid).title

        def rename(value: str | None) -> None:
            if not value:
                return
            with self.lmdesk.guard(_("Could not rename the conversation")):
                self.lmdesk.store.update_conversation(cid, title=value)
                if self.meta is not None and self.meta.id == cid:
                    self.meta.title = value
            self.refresh_sidebar()
            self._update_titles()

        self.app.push_screen(TextInputScreen(_("Rename conversation"), title), rename)

    def action_pin_conversation(self) -> None:
        cid = self._target_id()
        if cid is None or not self._writable():
            return
        with self.lmdesk.guard(_("Could not pin the conversation")):
            pinned = not self.lmdesk.store.get_conversation(cid).pinned
            self.lmdesk.store.update_conversation(cid, pinned=pinned)
            if self.meta is not None and self.meta.id == cid:
                self.meta.pinned = pinned
            self.lmdesk.notify(_("Pinned to the top.") if pinned else "Unpinned.")
        self.refresh_sidebar()

    def action_delete_conversation(self) -> None:
        cid = self._target_id()
        if cid is None or not self._writable():
            return
        title = cid
        with self.lmdesk.guard(_("Could not read the conversation")):
            title = self.lmdesk.store.get_conversation(cid).title

        async def delete(yes: bool | None) -> None:
            if not yes:
                return
            if self.meta is not None and self.meta.id == cid:
                self.pane.leave_reply()
            with self.lmdesk.guard(_("Could not delete the conversation")):
                self.lmdesk.store.delete_conversation(cid)
                self.lmdesk.notify(_("Deleted “{title}”.", title=title))
            if self.meta is not None and self.meta.id == cid:
                self.meta = None
                metas = self.refresh_sidebar()
                if metas:
                    await self.open_conversation(metas[0].id)
                else:
                    await self.new_conversation(quiet=True)
            else:
                self.refresh_sidebar()

        self.app.push_screen(
            ConfirmScreen(_("Delete conversation"), _("Delete “{title}” and all its messages?",
                                                   title=title)),
            delete,
        )

    def action_search(self) -> None:
        async def opened(hit: SearchHit | None) -> None:
            if hit is not None:
                await self.open_conversation(hit.conversation_id, around=hit.message_id)

        self.app.push_screen(SearchScreen(self.lmdesk.store.search), opened)

    def action_export_conversation(self, fmt: str = "md") -> None:
        if self.meta is None:
            return
        meta = self.meta
        suffix = ".json" if fmt == "json" else ".md"

        def export(value: str | None) -> None:
            if value:
                self.export_to(meta.id, Path(value))

        self.app.push_screen(
            TextInputScreen(
                _("Export conversation"), str(export_dir() / f"{slug(meta.title)}{suffix}"),
                hint=_("A path ending in .md (Markdown) or .json (JSON, can be imported); a "
                       "relative one goes under {export_dir}.", export_dir=export_dir()),
            ),
            export,
        )

    def export_to(self, cid: str, path: Path) -> Path | None:
        try:
            path = export_conversation(self.lmdesk.store, cid, path)
        except (OSError, StoreError) as exc:
            self.lmdesk.notify(_("Could not export: {exc}", exc=exc), severity="error", timeout=10)
            return None
        self.lmdesk.notify(_("Exported to {path}", path=path), title=_("Export"))
        return path

    def action_import_conversation(self) -> None:
        if self._writable():
            ask_import(self.lmdesk, self.import_from)

    async def import_from(self, path: Path) -> ConversationMeta | None:
        try:
            meta = import_conversation(self.lmdesk.store, path)
        except (OSError, UnicodeDecodeError, ValueError, StoreError) as exc:
            self.lmdesk.notify(_("Could not import {path}: {exc}",
                                 path=path, exc=exc), severity="error", timeout=10)
            return None
        await self.open_conversation(meta.id)
        self.lmdesk.notify(_("Imported “{title}”.", title=meta.title))
        return meta
