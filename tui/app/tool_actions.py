"""The app's tool actions: the doctor, knowledge bases and sources, compare, serving the API.

``ToolActions`` is mixed into ``LmdeskApp``: its actions are in the keymap (scope "app").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from textual import work

from tui.app.screens.chat import ChatScreen
from tui.engine.base import Engine
from tui.engine.protocol import ChatMessage, EngineEvent, SamplingParams
from tui.serve import ApiServer

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class ToolActions:
    """The doctor, knowledge bases, compare and the API for ``LmdeskApp`` (a mixin)."""

    @property
    def _lm(self) -> LmdeskApp:
        return cast("LmdeskApp", self)

    def acquire_generation(self, cancel: threading.Event) -> bool:
        """Take ``generation_lock`` (in a worker thread); False if ``cancel`` is set first."""
        while not self._lm.generation_lock.acquire(timeout=0.05):
            if cancel.is_set():
                return False
        return True

    def locked_generate(
        self, engine: Engine, messages: Sequence[ChatMessage], sampling: SamplingParams,
        cancel: threading.Event,
    ) -> Iterator[EngineEvent]:
        """``engine.generate`` holding ``generation_lock`` (the API shares the engine); yields
        nothing when ``cancel`` is set while waiting for the lock."""
        if not self._lm.acquire_generation(cancel):
            return
        try:
            yield from engine.generate(messages, sampling)
        finally:
            self._lm.generation_lock.release()

    def _chat_screen(self) -> ChatScreen | None:
        return next((s for s in self._lm.screen_stack if isinstance(s, ChatScreen)), None)

    def action_doctor(self) -> None:
        from tui.app.screens.doctor import DoctorScreen

        if not isinstance(self._lm.screen, DoctorScreen):
            self._lm.push_screen(DoctorScreen())

    def action_welcome(self) -> None:
        from tui.app.screens.welcome import WelcomeScreen

        if not isinstance(self._lm.screen, WelcomeScreen):
            self._lm.push_screen(WelcomeScreen())

    def action_knowledge(self) -> None:
        from tui.app.screens.knowledge import KnowledgeScreen

        chat = self._lm._chat_screen()
        if not isinstance(self._lm.screen, KnowledgeScreen):
            self._lm.push_screen(KnowledgeScreen(chat.meta.id if chat and chat.meta else None))

    def conversation_extra_changed(self, cid: str, extra: dict[str, Any]) -> None:
        """A screen changed a conversation's ``extra``: keep the open one's copy in step."""
        chat = self._lm._chat_screen()
        if chat is None:
            return
        for meta in (chat.meta, chat.pane.meta):
            if meta is not None and meta.id == cid:
                meta.extra = dict(extra)

    def action_open_source(self) -> None:
        """Open a passage cited under the selected reply (else the last one)."""
        from tui.app.screens.knowledge import SourceScreen, source_dicts
        from tui.app.screens.text_input import TextInputScreen

        chat = self._lm._chat_screen()
        message = chat.pane.copy_source() if chat is not None else None
        if message is not None and message.role != "assistant":
            message = next((m for m in reversed(chat.pane.history) if m.role == "assistant"),
                           None) if chat is not None else None
        sources = source_dicts(message.stats if message is not None else None)
        if not sources:
            self._lm.notify("That reply cites no source.")
            return
        if len(sources) == 1:
            self._lm.push_screen(SourceScreen(sources[0]))
            return

        def chosen(value: str | None) -> None:
            if value is None:
                return
            match = next((s for i, s in enumerate(sources)
                          if str(s.get("n", i + 1)) == value.strip("[] ")), None)
            if match is None:
                self._lm.notify(f"There is no source [{value}].", severity="warning")
            else:
                self._lm.push_screen(SourceScreen(match))

        numbers = ", ".join(str(s.get("n", i + 1)) for i, s in enumerate(sources))
        self._lm.push_screen(TextInputScreen("Open a source", hint=f"Its number: {numbers}."),
                         chosen)

    def action_compare(self) -> None:
        from tui.app.screens.compare import CompareScreen

        chat = self._lm._chat_screen()
        if not isinstance(self._lm.screen, CompareScreen):
            self._lm.push_screen(CompareScreen(
                conversation_id=chat.meta.id if chat and chat.meta else None))

    def action_serve(self) -> None:
        """Start the API on loopback with the loaded model; a second press stops it."""
        from tui.app.serve_share import start_api

        server = self._lm.api_server
        if server is not None:
            self._lm.api_server = None
            self._lm._stop_api(server)
            return
        engine = self._lm._engine
        if engine is None or self._lm.model_state != "ready":
            self._lm.notify("Wait for the model to load, then serve it.", severity="warning")
            return
        try:
            self._lm.api_server = start_api(engine, self._lm.model_name, self._lm.generation_lock,
                                        self._lm.api_port)
        except Exception as exc:  # a taken port, mostly
            self._lm.notify(f"{exc}", title="Could not start the API", severity="error", timeout=12)
            return
        self._lm.notify(f"Serving {self._lm.model_name} at {self._lm.api_server.url} "
                        f"(loopback only). "
                    f"{self._lm.key_for('serve')} again stops it.", title="API on")

    @work(thread=True, group="api-stop", exit_on_error=False)
    def _stop_api(self, server: ApiServer) -> None:
        from tui.app.serve_share import stop_api

        try:
            stop_api(server)
        except Exception as exc:
            self._lm.call_from_thread(self._lm.notify, f"{exc}", title="Stopping the API failed",
                                  severity="error")
            return
        self._lm.call_from_thread(self._lm.notify, "The API is stopped.", title="API off")
