"""The app's other panels: the doctor, the welcome, knowledge bases and cited sources,
compare, and serving the loaded model on the API.

``Panels`` belongs to ``LmdeskApp`` (``app.panels``); the app's actions for these keys (scope
"app" in the keymap) call it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tui.app.screens.chat import ChatScreen
from tui.i18n import _
from tui.serve import ApiServer

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class Panels:
    """The doctor, welcome, knowledge bases and cited sources, compare, and the API."""

    def __init__(self, app: LmdeskApp) -> None:
        self._lm = app

    def _chat_screen(self) -> ChatScreen | None:
        chat = self._lm.main_screen
        return chat if chat is not None and chat.is_mounted else None

    def open_doctor(self) -> None:
        from tui.app.screens.doctor import DoctorScreen

        if not isinstance(self._lm.screen, DoctorScreen):
            self._lm.push_screen(DoctorScreen())

    def open_welcome(self) -> None:
        from tui.app.screens.welcome import WelcomeScreen

        if not isinstance(self._lm.screen, WelcomeScreen):
            self._lm.push_screen(WelcomeScreen())

    def open_knowledge(self) -> None:
        from tui.app.screens.knowledge import KnowledgeScreen

        chat = self._chat_screen()
        if not isinstance(self._lm.screen, KnowledgeScreen):
            self._lm.push_screen(KnowledgeScreen(chat.meta.id if chat and chat.meta else None))

    def open_source(self) -> None:
        """Open a passage cited under the selected reply (else the last one)."""
        from tui.app.screens.knowledge import SourceScreen
        from tui.app.screens.text_input import TextInputScreen
        from tui.app.widgets.reply_lines import source_dicts

        chat = self._chat_screen()
        message = chat.pane.copy_source() if chat is not None else None
        if message is not None and message.role != "assistant":
            message = next((m for m in reversed(chat.pane.history) if m.role == "assistant"),
                           None) if chat is not None else None
        sources = source_dicts(message.stats if message is not None else None)
        if not sources:
            self._lm.notify(_("That reply cites no source."))
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
                self._lm.notify(_("There is no source [{value}].", value=value), severity="warning")
            else:
                self._lm.push_screen(SourceScreen(match))

        numbers = ", ".join(str(s.get("n", i + 1)) for i, s in enumerate(sources))
        self._lm.push_screen(TextInputScreen(_("Open a source"), hint=_("Its number: {numbers}.",
                                                                     numbers=numbers)),
                         chosen)

    def open_compare(self) -> None:
        from tui.app.screens.compare import CompareScreen

        chat = self._chat_screen()
        if not isinstance(self._lm.screen, CompareScreen):
            self._lm.push_screen(CompareScreen(
                conversation_id=chat.meta.id if chat and chat.meta else None))

    def toggle_serving(self) -> None:
        """Start the API on loopback with the loaded model; a second press stops it."""
        from tui.app.serve_share import start_api

        app = self._lm
        server = app.api_server
        if server is not None:
            app.api_server = None
            app.run_worker(partial(self._stop_api, server), thread=True, group="api-stop",
                           exit_on_error=False)
            return
        current = app.current
        if current is None or app.model_state != "ready":
            app.notify(_("Wait for the model to load, then serve it."), severity="warning")
            return
        try:
            app.api_server = start_api(current.engine, current.name, app.session.lock,
                                       app.api_port)
        except OSError as exc:  # a taken port, mostly
            app.notify(f"{exc}", title=_("Could not start the API"), severity="error", timeout=12)
            return
        app.notify(_("Serving {name} at {url} (loopback only). {key_for} again stops it.",
                     name=current.name, url=app.api_server.url,
                     key_for=app.key_for('serve')), title=_("API on"))

    def _stop_api(self, server: ApiServer) -> None:
        """Runs in a thread (a failure reaches the app's worker handler)."""
        from tui.app.serve_share import stop_api

        stop_api(server)
        self._lm.call_from_thread(self._lm.notify, _("The API is stopped."), title=_("API off"))
