"""The app's template library, personas and memory, and the prompt's ``/`` commands.

``Library`` belongs to ``LmdeskApp`` (``app.library``); the app's actions for these keys
(scope "app" in the keymap, so the bindings and the command palette reach them) call it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tui.i18n import N_, _
from tui.prompting.context import Policy, set_conversation_policy
from tui.prompting.memory import MemoryStore, set_conversation_memory
from tui.prompting.personas import PersonaLibrary, PersonaNotFound, set_conversation_persona
from tui.prompting.templates import PromptingError, TemplateLibrary
from tui.store import ConversationMeta, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp
    from tui.app.screens.chat import ChatScreen
    from tui.app.screens.template_form import FilledPrompt
    from tui.app.widgets.chat_pane import ChatPane

SLASH_HELP = (
    N_("/remember TEXT  add a memory\n/template NAME  fill a template (no name: the "
       "library)\n/persona NAME   use a persona here (none: no persona; no name: the "
       "picker)\n/memory on|off  memory in this conversation (no argument: the memory "
       "screen)\n/context drop|summarize  when the window is full: drop or summarise the oldest "
       "turns\n/help           this list\nStart with // to send a line that begins with /.")
)
SLASH_COMMANDS = ("remember", "template", "persona", "memory", "context", "help")


class Library:
    """Templates, personas and memory for the open conversation."""

    def __init__(self, app: LmdeskApp) -> None:
        self._lm = app

    def chat_screen(self) -> ChatScreen | None:
        chat = self._lm.main_screen
        return chat if chat is not None and chat.is_mounted else None

    def _library_open(self) -> bool:
        from tui.app.screens.memory import MemoryScreen
        from tui.app.screens.personas import PersonasScreen
        from tui.app.screens.template_form import TemplateFormScreen
        from tui.app.screens.templates import TemplatesScreen

        kinds = (TemplatesScreen, TemplateFormScreen, PersonasScreen, MemoryScreen)
        return any(isinstance(s, kinds) for s in self._lm.screen_stack)

    def _selection(self) -> str:
        chat = self.chat_screen()
        if chat is None:
            return ""
        source = chat.pane.copy_source()
        return source.content if source is not None else ""

    # -- templates -----------------------------------------------------------------------------

    def open_templates(self, query: str = "") -> None:
        from tui.app.screens.templates import TemplatesScreen

        if self._library_open():
            return
        self._lm.push_screen(TemplatesScreen(query, self._selection()), self._use_filled)

    def open_template_form(self, name: str) -> None:
        from tui.app.screens.template_form import TemplateFormScreen

        app = self._lm
        try:
            template = TemplateLibrary(app.store).get(name)
        except (PromptingError, StoreError) as exc:
            app.notify(str(exc), title=_("Template"), severity="error")
            return
        app.push_screen(TemplateFormScreen(template, self._selection()), self._use_filled)

    async def _use_filled(self, result: FilledPrompt | None) -> None:
        chat = self.chat_screen()
        if result is None or chat is None:
            return
        pane = chat.pane
        if result.send:
            await pane.send(result.text)
        else:
            pane.prompt.set_prompt(result.text)
            pane.prompt.focus()

    # -- personas ------------------------------------------------------------------------------

    def _set_meta(self, meta: ConversationMeta) -> None:
        chat = self.chat_screen()
        if chat is not None and chat.meta is not None and chat.meta.id == meta.id:
            chat.meta = meta
            chat.pane.meta = meta

    def _conversation(self) -> ConversationMeta | None:
        chat = self.chat_screen()
        return chat.pane.meta if chat is not None else None

    def open_personas(self) -> None:
        from tui.app.screens.personas import PersonasScreen

        if self._library_open():
            return
        self._lm.push_screen(PersonasScreen(self._conversation(), self.use_persona))

    def use_persona(self, persona_id: str | None) -> None:
        app = self._lm
        meta = self._conversation()
        if meta is None:
            return
        with app.guard(_("Could not set the persona")):
            self._set_meta(set_conversation_persona(app.store, meta.id, persona_id))
            if persona_id is None:
                app.notify(_("No persona in this conversation."))
            else:
                name = PersonaLibrary(app.store).get(persona_id).name
                app.notify(_("Persona: {name}.", name=name))

    # -- memory --------------------------------------------------------------------------------

    def open_memory(self) -> None:
        from tui.app.screens.memory import MemoryScreen

        if self._library_open():
            return
        chat = self.chat_screen()
        history = list(chat.pane.history) if chat is not None else []
        self._lm.push_screen(MemoryScreen(self._conversation(), history, self.set_memory_on))

    def set_memory_on(self, on: bool) -> None:
        app = self._lm
        meta = self._conversation()
        if meta is None:
            return
        with app.guard(_("Could not change memory for this conversation")):
            self._set_meta(set_conversation_memory(app.store, meta.id, on))
            app.notify(_("Memory on in this conversation.") if on
                       else _("Memory off in this conversation."))

    def set_context_policy(self, word: str) -> None:
        app = self._lm
        meta = self._conversation()
        policy = {"drop": "drop_oldest", "drop_oldest": "drop_oldest", "summarize":
                  "summarize", "summarise": "summarize"}.get(word)
        if meta is None:
            return
        if policy is None:
            app.notify(_("Usage: /context drop|summarize"), severity="warning")
            return
        with app.guard(_("Could not change the context policy")):
            self._set_meta(set_conversation_policy(app.store, meta.id,
                                                   cast("Policy", policy)))
            app.notify(_("When the window is full, the oldest turns are summarised.")
                       if policy == "summarize"
                       else _("When the window is full, the oldest turns are left out."))

    # -- / commands ----------------------------------------------------------------------------

    async def slash_command(self, pane: ChatPane, text: str) -> bool:
        """Run ``text`` when it is a known ``/`` command; False to send it as a prompt."""
        app = self._lm
        line = text.strip()
        if not line.startswith("/") or line.startswith("//"):
            return False
        word, _space, arg = line[1:].partition(" ")
        word, arg = word.lower(), arg.strip()
        if word not in SLASH_COMMANDS:
            return False
        pane.prompt.remember(text)
        pane.prompt.clear()
        try:
            if word == "remember":
                if not arg:
                    app.notify(_("Usage: /remember TEXT"), severity="warning")
                    return True
                memory = MemoryStore(app.store).add(arg)
                app.notify(_("Remembered: {text}", text=memory.text))
            elif word == "template":
                if arg:
                    self.open_template_form(arg)
                else:
                    self.open_templates()
            elif word == "persona":
                if not arg:
                    self.open_personas()
                elif arg.lower() in ("none", "off"):
                    self.use_persona(None)
                else:
                    self.use_persona(_find_persona(PersonaLibrary(app.store), arg))
            elif word == "memory":
                if arg.lower() in ("on", "off"):
                    self.set_memory_on(arg.lower() == "on")
                elif not arg:
                    self.open_memory()
                else:
                    app.notify(_("Usage: /memory on|off"), severity="warning")
            elif word == "context":
                self.set_context_policy(arg.lower())
            else:
                app.notify(_(SLASH_HELP), title=_("/ commands"), timeout=15)
        except (PromptingError, StoreError) as exc:
            app.notify(str(exc), title=f"/{word}", severity="error", timeout=10)
        return True


def _find_persona(library: PersonaLibrary, wanted: str) -> str:
    """A persona id by id or (case-insensitive) name."""
    for persona in library.list_personas():
        if wanted in (persona.id,) or persona.name.lower() == wanted.lower():
            return persona.id
    names = ", ".join(p.id for p in library.list_personas())
    raise PersonaNotFound(_("no persona {wanted!r}; there are: {names} (or none)",
                            wanted=wanted, names=names))
