"""The lmdesk Textual app: wires the store, the model session, themes and keys to the screens.

The app renders; it does not assemble prompts or juggle engines. Models are chosen, loaded
and shared through ``tui.session.ModelSession``, driven from one named worker ("model-load");
what the session reports arrives as ``SessionChanged`` messages. Worker failures land in one
``Worker.StateChanged`` handler.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events, on, work
from textual.actions import ActionParseResult
from textual.actions import parse as parse_action
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.screen import Screen
from textual.theme import Theme
from textual.widget import Widget
from textual.widgets import TextArea
from textual.worker import Worker, WorkerState

from tui.app import gc_tuning, keymap
from tui.app.commands import ActionsProvider, ConversationsProvider, TemplatesProvider
from tui.app.library import Library
from tui.app.localize import localize_bindings, localize_node
from tui.app.messages import SessionChanged
from tui.app.panels import Panels
from tui.app.screens.chat import ChatScreen
from tui.app.screens.help import HelpScreen
from tui.app.themes import DEFAULT_DARK, load_themes, problems_notice, stylesheet_path
from tui.app.widgets.prompt_input import register_terminal_keys
from tui.config import Paths, Settings
from tui.engine.base import Engine
from tui.engine.protocol import LoadParams, ModelInfo, SamplingParams
from tui.i18n import _
from tui.monitor import RateTracker, Sampler
from tui.session.choice import ChoiceError, ResolvedModel, resolve
from tui.session.model_session import (
    LoadedModel,
    ModelFailed,
    ModelLoading,
    ModelReady,
    ModelSession,
    ModelUnloaded,
    SessionEvent,
)
from tui.session.params import sampling_params
from tui.session.usage import record_reply
from tui.store import (
    ConversationMeta,
    ConversationOptions,
    EndpointModel,
    LocalModel,
    ModelChoice,
    ProfileModel,
    Store,
    StoreError,
    StoreReadOnly,
)
from tui.tools import ToolBox, ToolConfig
from tui.tools.knowledge import knowledge_search
from tui.tools.mcp_hub import McpHub

if TYPE_CHECKING:
    from tui.doctor.machine import LlamaBuild
    from tui.models.endpoints import Endpoint
    from tui.models.fit import FitEstimate
    from tui.models.profiles import Profile
    from tui.serve import ApiServer
    from tui.session.turn import TurnOutcome

EngineFactory = Callable[[LoadParams], Engine]
ALWAYS_ALLOW_KEY = "tools.always_allow"
FOCUS_ACTIONS = frozenset({"focus_next", "focus_previous", "focus_log", "focus_prompt"})
"""Actions by which the user moves the focus on purpose (tab, shift+tab, f4, f5)."""
DELTA_GATHER_S = 0.05
"""How long the model worker may gather a reply's text before sending it: the reply is drawn
at most every 40 ms, so the app wakes once per batch of tokens instead of once per token."""


class LmdeskApp(App[None]):
    """A terminal workstation for chatting with local language models."""

    TITLE = "lmdesk"
    COMMANDS: ClassVar = App.COMMANDS | {ActionsProvider, ConversationsProvider,
                                          TemplatesProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        *keymap.bindings("app"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
        # priority: the app moves the focus before it hands on the keys typed after tab (as
        # the screens' plain binding, tab bubbled up from a form's field while the letters
        # typed after it went into that field); check_action leaves tab to an indenting
        # editor
        Binding("tab", "focus_next", show=False, priority=True),
        Binding("shift+tab", "focus_previous", show=False, priority=True),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012 (as Textual types it)

    model_state: reactive[str] = reactive("loading")
    """"loading", "ready" or "failed" (the session's state, seen from the UI thread)."""

    def __init__(
        self,
        *,
        settings: Settings,
        paths: Paths,
        store: Store,
        engine_factory: EngineFactory,
        model_path: str,
        model_name: str,
        notices: Sequence[str] = (),
        show_welcome: bool = True,
    ) -> None:
        # Textual copies each class's bindings into every widget it makes: translate the
        # classes' descriptions before any widget of this app exists
        localize_bindings()
        super().__init__(css_path=stylesheet_path())
        localize_node(self)
        register_terminal_keys()
        self.first_frame_at: float | None = None
        """perf_counter() when the main screen was first painted (``lmdesk bench ui``)."""
        self.settings = settings
        self.paths = paths
        self.store = store
        self.session = ModelSession(engine_factory, listener=self._from_session)
        self._start = LocalModel(model_path, model_name)
        self._target_name = model_name
        """The model being switched to, shown while it loads."""
        self._notices = list(notices)
        self._store_notices_shown = 0
        self._closed = False
        self.show_welcome = show_welcome
        """Show the first-run welcome on a fresh store (tests turn it off)."""
        self.api_server: ApiServer | None = None
        """The API serving the loaded model while the user chats (None when off)."""
        self.api_port = settings.serve_port
        self.doctor_llama: LlamaBuild | None = None
        """A llama.cpp probe result for the doctor screen (tests); None probes for real."""
        self.sampler: Sampler | None = None
        """Made on first use by the monitor panel; tests set a fake before running."""
        self.rates = RateTracker()
        self.library = Library(self)
        self.panels = Panels(self)
        self.tool_config = ToolConfig.from_settings(
            settings.tool_folders, settings.tools_always_allow, settings.mcp)
        self._notices.extend(f"config.toml: {p}" for p in self.tool_config.problems)
        self.tool_hub = McpHub(list(self.tool_config.mcp_servers),
                               log_dir=str(paths.cache_dir))
        """MCP servers, started on first use and kept while the app runs."""
        self.main_screen: ChatScreen | None = None
        self._persona_name: tuple[str | None, str] = (None, "")
        """(persona id, its name): the last one looked up for ``active_persona``."""
        self._chosen_focus: weakref.ref[Widget] | None = None
        """Where the user last put the focus on the chat screen (tab, f4, a click)."""

        themes = load_themes(paths.themes_dir)
        for theme in themes.themes:
            self.register_theme(theme)
        self._theme_problems = themes.problems
        self._theme_choice = ""
        good_keys, key_problems = keymap.check_keymap(settings.keymap)
        if key_problems:  # one notification for all of them
            self._notices.append("\n".join(key_problems))
        self.keymap = good_keys
        self.set_keymap(good_keys)
        self._saved_theme = self._pick_theme()
        self.theme = self._saved_theme

    # -- start ---------------------------------------------------------------------------------

    def _pick_theme(self) -> str:
        wanted = self.settings.theme
        if wanted and wanted in self.available_themes:
            return wanted
        stored = None
        with suppress(StoreError):
            stored = self.store.get_setting("theme")
        chosen = stored if isinstance(stored, str) and stored in self.available_themes \
            else DEFAULT_DARK
        if wanted:  # told with the theme files that did not load: one notification
            self._theme_choice = (f"theme = {wanted!r} in config.toml is not a theme that "
                                  f"loaded: using {chosen}")
        return chosen

    def get_default_screen(self) -> Screen[None]:
        self.main_screen = ChatScreen()
        return self.main_screen

    def mark_first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()

    def on_mount(self) -> None:
        if self.read_only:
            self.title = _("lmdesk (read-only)")
        self.show_new_notices()
        for notice in self._notices:
            self.notify(notice, severity="warning", timeout=12)
        if self._theme_problems or self._theme_choice:
            self.notify(problems_notice(self._theme_problems, self._theme_choice),
                        title=_("Themes"), severity="warning", timeout=12)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self._switch_to_choice(self._start, quiet_failure=False)
        if self.show_welcome:
            from tui.app.screens.welcome import WelcomeScreen, should_welcome

            if should_welcome(self):
                self.push_screen(WelcomeScreen(first_run=True))

    @property
    def read_only(self) -> bool:
        return bool(self.store.read_only)

    def show_new_notices(self) -> None:
        """Tell what the store had to mend since the last time (a damaged file found when
        first read), once each."""
        notices = self.store.notices
        for notice in notices[self._store_notices_shown:]:
            self.notify(notice, severity="warning", timeout=12)
        self._store_notices_shown = len(notices)

    def _theme_changed(self, theme: Theme) -> None:
        if theme.name == self._saved_theme or self.read_only:
            return
        self._saved_theme = theme.name
        with self.guard(_("Could not save the theme choice")):
            self.store.set_setting("theme", theme.name)

    # -- focus: the prompt, unless the user chose another place --------------------------------

    async def run_action(self, action: str | ActionParseResult,
                         default_namespace: DOMNode | None = None,
                         namespaces: Mapping[str, DOMNode] | None = None) -> bool:
        handled = await super().run_action(action, default_namespace, namespaces)
        name = parse_action(action)[1] if isinstance(action, str) else action[1]
        if name in FOCUS_ACTIONS:
            self.call_later(self._note_chosen_focus)  # after the focus moves (call_later too)
        return handled

    async def on_event(self, event: events.Event) -> None:
        await super().on_event(event)
        if isinstance(event, events.MouseDown):
            self.call_later(self._note_chosen_focus)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("focus_next", "focus_previous"):
            focused = self.focused
            return not (isinstance(focused, TextArea) and focused.tab_behavior == "indent")
        return True

    def _note_chosen_focus(self) -> None:
        chat = self.main_screen
        if chat is not None and self.screen is chat and chat.focused is not None:
            self._chosen_focus = weakref.ref(chat.focused)

    def _screen_changed(self, screen: Screen[object]) -> None:
        if screen is self.main_screen:
            self.call_after_refresh(self.restore_prompt_focus)

    def restore_prompt_focus(self) -> None:
        """Back on the chat screen (a dialog closed, a conversation opened): the focus goes
        to the prompt, unless it is where the user put it on purpose."""
        chat = self.main_screen
        if chat is None or self.screen is not chat or not chat.is_mounted:
            return
        chosen = self._chosen_focus() if self._chosen_focus is not None else None
        focused = chat.focused
        prompt = chat.pane.prompt
        if focused is prompt or (focused is not None and focused is chosen):
            return
        prompt.focus()

    # -- the current model (tui.session) -------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        return self.session.current

    @property
    def engine(self) -> Engine | None:
        current = self.session.current
        return current.engine if current is not None else None

    @property
    def engine_info(self) -> ModelInfo | None:
        current = self.session.current
        return current.info if current is not None else None

    @property
    def model_name(self) -> str:
        current = self.session.current
        if self.model_state == "loading" or current is None:
            return self._target_name
        return current.name

    @property
    def model_path(self) -> str:
        """The current engine's key: its file, a profile's parameters, or a remote model."""
        current = self.session.current
        return current.key if current is not None else ""

    @property
    def model_error(self) -> str:
        return self.session.error

    @property
    def profile(self) -> Profile | None:
        current = self.session.current
        return current.model.profile if current is not None else None

    @property
    def remote(self) -> Endpoint | None:
        """The endpoint the current model runs on (None: it runs here)."""
        current = self.session.current
        return current.model.endpoint if current is not None else None

    @property
    def model_label(self) -> str:
        """"smollm2-135m (terse-coder)" with a profile, else the model's name."""
        current = self.session.current
        if self.model_state == "loading" or current is None:
            return self._target_name
        return current.model.label

    def remote_mark(self) -> str:
        """"⇄ name" while the current model runs on a remote endpoint, else ""."""
        remote = self.remote
        return f"⇄ {remote.name}" if remote is not None else ""

    def busy_replying(self) -> bool:
        chat = self.main_screen
        return chat is not None and chat.is_mounted and chat.pane.job is not None

    def can_switch_model(self) -> bool:
        """Whether the model may change now; if not, say why in a notice."""
        if self.busy_replying():
            self.notify(_("Wait for the reply to finish (esc stops it), then switch."),
                        severity="warning")
            return False
        if self.model_state == "loading":
            self.notify(_("{model_name} is still loading: switch once it is ready.",
                          model_name=self.model_name),
                        severity="warning")
            return False
        return True

    def use_choice(self, choice: ModelChoice, estimate: FitEstimate | None = None) -> bool:
        """Make ``choice`` the current model and the open conversation's model. False (and a
        notice) while a reply is being written or when it cannot be used."""
        if not self.can_switch_model():
            return False
        try:
            resolved = resolve(choice, settings=self.settings, store=self.store)
        except ChoiceError as exc:
            self.notify(str(exc), title=_("Model not used"), severity="error", timeout=15)
            return False
        meta = self.main_screen.meta if self.main_screen is not None else None
        if meta is not None and not self.read_only:
            with self.guard(_("Could not save the conversation's model")):
                self.store.update_conversation(meta.id, model=resolved.name)
                new = self.store.update_options(meta.id, model=choice)
                meta.model = resolved.name
                self.conversation_options_changed(meta.id, new.options)
            if self.main_screen is not None and self.main_screen.is_mounted:
                self.main_screen.refresh_sidebar()  # its ⇄ marker follows the model now
        self.switch_to(resolved, estimate)
        return True

    def use_model(self, path: str, name: str, estimate: FitEstimate | None = None) -> bool:
        return self.use_choice(LocalModel(path, name), estimate)

    def use_profile(self, profile: Profile) -> bool:
        return self.use_choice(ProfileModel(profile.id, profile.nickname, profile.model_path))

    def use_endpoint(self, endpoint: Endpoint, model: str) -> bool:
        return self.use_choice(EndpointModel(endpoint.id, model, endpoint.name))

    def follow_conversation(self, meta: ConversationMeta) -> None:
        """An opened conversation runs on its own model again (unless a reply is streaming or
        a model is loading: then it keeps the current one)."""
        choice = meta.options.model
        if choice is None or self.model_state == "loading" or self.busy_replying():
            return
        if isinstance(choice, LocalModel) and not Path(choice.path).is_file():
            self.notify(_("This conversation's model {value} is not here any more; it goes on "
                          "with {model_name}.",
                          value=choice.name or choice.path,
                          model_name=self.model_name), severity="warning")
            return
        try:
            resolved = resolve(choice, settings=self.settings, store=self.store)
        except ChoiceError as exc:
            self.notify(_("This conversation's model is not usable ({exc}); it goes on with "
                          "{model_name}.", exc=exc, model_name=self.model_name), severity="warning")
            return
        current = self.session.current
        if current is not None and current.key == resolved.key and self.model_state == "ready":
            if current.model != resolved:  # a profile edited since: take its new values
                self.session.adopt(resolved, current.engine, current.info)
            return
        self.switch_to(resolved)

    def switch_to(self, resolved: ResolvedModel, estimate: FitEstimate | None = None) -> None:
        """Load ``resolved`` (or reuse its engine) and make it current, in the background."""
        current = self.session.current
        if current is not None and current.key == resolved.key and self.model_state == "ready":
            if current.model != resolved:
                self.session.adopt(resolved, current.engine, current.info)
            return
        self._target_name = resolved.label
        self.session.begin(resolved.label)
        self.model_state = "loading"
        for note in resolved.notes:
            self.notify(note, severity="warning")
        self._switch_worker(resolved, estimate)

    def _switch_to_choice(self, choice: ModelChoice, *, quiet_failure: bool) -> None:
        try:
            resolved = resolve(choice, settings=self.settings, store=self.store)
        except ChoiceError as exc:
            self.session.error = str(exc)
            self.model_state = "failed"
            if not quiet_failure:
                self.notify(_("{exc}\nThe app keeps running: browse, search and export still "
                              "work.", exc=exc), title=_("No model"), severity="error", timeout=20)
            return
        self.switch_to(resolved)

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _switch_worker(self, resolved: ResolvedModel, estimate: FitEstimate | None) -> None:
        """Runs in a thread; the outcome comes back through ``_from_session``."""
        self.session.switch(resolved, estimate)

    def unload_model(self, key: str) -> None:
        if key == self.model_path and self.busy_replying():
            self.notify(_("Wait for the reply to finish first."), severity="warning")
            return
        self._unload_worker(key)

    @work(thread=True, group="model-unload", exit_on_error=False)
    def _unload_worker(self, key: str) -> None:
        self.session.unload(key)

    def _from_session(self, event: SessionEvent) -> None:
        """The session's listener: called from whichever thread did the work."""
        self.post_message(SessionChanged(event))

    @on(SessionChanged)
    def _session_changed(self, message: SessionChanged) -> None:
        event = message.event
        if isinstance(event, ModelLoading):
            self._target_name = event.name
            self.model_state = "loading"
        elif isinstance(event, ModelReady):
            info = event.loaded.info
            if self.sampler is not None and info.worker_pid > 0:
                self.sampler.watch(info.worker_pid, event.loaded.name)
            self.rates.set_context(0, info.n_ctx)
            if info.is_base_model:
                self.notify(_("{name} has no chat template: it is a base model and runs in "
                              "completion mode (it continues your text rather than answering "
                              "it).", name=event.loaded.name),
                            title=_("Completion mode"), timeout=12)
            self.model_state = "ready"
            self.mutate_reactive(LmdeskApp.model_state)  # the same state, another model
        elif isinstance(event, ModelFailed):
            self.model_state = "ready" if event.kept is not None else "failed"
            self.mutate_reactive(LmdeskApp.model_state)
            kept = _("\n{label} stays loaded.", label=event.kept.model.label) if event.kept else (
                _("\nThe app keeps running: browse, search and export still work."))
            self.notify(f"{event.error}{kept}", title=_("{name} did not load", name=event.name),
                        severity="error", timeout=20)
        elif isinstance(event, ModelUnloaded):
            if self.sampler is not None and event.worker_pid > 0:
                self.sampler.unwatch(event.worker_pid)
            if event.was_current:
                self.model_state = "failed"
            self.notify(_("Unloaded {key}.", key=event.key), title=_("Models"))

    # -- replies ---------------------------------------------------------------------------------

    def reply_sampling(self, meta: ConversationMeta) -> tuple[SamplingParams, list[str]]:
        """How the next reply in ``meta`` samples: settings, the model's profile, the
        conversation's options (the persona's preset is added with the prompt)."""
        sampling, notes = sampling_params(self.settings, profile=self.profile,
                                          options=meta.options)
        return replace(sampling, delta_gather_s=DELTA_GATHER_S), notes

    def reply_done(self, outcome: TurnOutcome) -> None:
        """A reply ended (UI thread): feed the rate tracker, count the model's usage."""
        done = outcome.done
        self.rates.finish(done.stats if done is not None else None)
        if done is None or self.read_only or outcome.model is None:
            return
        with self.guard(_("Could not record the model's usage")):
            record_reply(self.store, outcome.model.model, done.stats)

    def always_allowed_tools(self) -> list[str]:
        """Tools that run without asking: config.toml's list and those answered "always"."""
        stored: object = None
        with suppress(StoreError):
            stored = self.store.get_setting(ALWAYS_ALLOW_KEY)
        extra = [t for t in stored if isinstance(t, str)] if isinstance(stored, list) else []
        return list(dict.fromkeys([*self.tool_config.always_allow, *extra]))

    def set_always_allowed_tools(self, names: list[str]) -> None:
        """The always-allowed tools chosen in the app (config.toml's stay as they are)."""
        kept = [n for n in names if n not in self.tool_config.always_allow]
        with self.guard(_("Could not save the always-allowed tools")):
            self.store.set_setting(ALWAYS_ALLOW_KEY, kept)

    def tool_box(self, meta: ConversationMeta) -> ToolBox:
        """The tools the conversation can use (its knowledge bases for search_knowledge)."""
        kbs = list(meta.options.knowledge_bases)
        return ToolBox(self.tool_config, self.tool_hub,
                       kb_search=knowledge_search(self.paths.data_dir, kbs) if kbs else None)

    def conversation_options_changed(self, cid: str, options: ConversationOptions) -> None:
        """A screen changed a conversation's options: keep the open one's copy in step."""
        chat = self.main_screen
        if chat is None:
            return
        for meta in (chat.meta, chat.pane.meta if chat.is_mounted else None):
            if meta is not None and meta.id == cid:
                meta.options = options

    def active_persona(self) -> str | None:
        """The open conversation's persona, by name (None: no persona)."""
        chat = self.main_screen
        meta = chat.meta if chat is not None else None
        persona_id = meta.options.persona if meta is not None else None
        if not persona_id:
            return None
        if self._persona_name[0] != persona_id:
            from tui.prompting.personas import PersonaLibrary

            name = persona_id
            with suppress(Exception):  # a persona deleted since: show its id
                name = PersonaLibrary(self.store).get(persona_id).name
            self._persona_name = (persona_id, name)
        return self._persona_name[1]

    # -- the monitor -------------------------------------------------------------------------

    def ensure_sampler(self) -> Sampler:
        """The monitor's sampler, made on first use, told about every loaded model's worker."""
        if self.sampler is None:
            self.sampler = Sampler()
        for entry in self.session.loaded():
            if entry.info.worker_pid > 0 and entry.info.worker_pid not in self.sampler.watched:
                self.sampler.watch(entry.info.worker_pid, entry.name)
        return self.sampler

    # -- closing -------------------------------------------------------------------------------

    def close_engine(self) -> None:
        """Stop any reply, save it as stopped, unload every model. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        server, self.api_server = self.api_server, None
        if server is not None:
            with suppress(Exception):
                server.stop()
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                with suppress(Exception):  # closing: nothing left to show an error on
                    screen.pane.save_before_exit()
        self.session.close()
        with suppress(Exception):
            self.tool_hub.close()
        if self.sampler is not None:
            self.sampler.close()

    async def action_quit(self) -> None:
        self.close_engine()
        self.exit()

    def on_unmount(self) -> None:
        self.close_engine()
        gc_tuning.release()

    # -- worker failures, in one place -------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that raised: one notice instead of a traceback (workers post their
        results as messages and leave their failures to this)."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        what = event.worker.group or event.worker.name or _("a background task")
        if isinstance(error, StoreReadOnly):
            self.notify(_("{what}: the data folder is read-only here.",
                          what=what), severity="warning")
        else:
            self.notify(f"{type(error).__name__}: {error}", title=_("{what} failed", what=what),
                        severity="error", timeout=12)

    # -- helpers for screens -------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette commands (theme, keys, screenshot...) in this language."""
        for command in super().get_system_commands(screen):
            yield SystemCommand(_(command.title), _(command.help), command.callback,
                                command.discover)

    def action_command_palette(self) -> None:
        """Textual's command palette, its prompt in this language."""
        if self.use_command_palette and not CommandPalette.is_open(cast("App[object]", self)):
            self.push_screen(CommandPalette(id="--command-palette",
                                            placeholder=_("Search for commands…")))

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Report a store or disk failure as a notification instead of a traceback."""
        try:
            yield
        except StoreReadOnly:
            self.notify(_("{what}: the data folder is read-only here.",
                          what=what), severity="warning")
        except (StoreError, OSError) as exc:
            self.notify(f"{what}: {exc}", severity="error", timeout=12)

    def key_for(self, binding_id: str) -> str:
        spec = next((s for s in keymap.ACTIONS if s.id == binding_id), None)
        keys = self.keymap.get(binding_id, spec.keys if spec else "")
        first = keys.split(",")[0]
        return self.get_key_display(Binding(first, ""))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for spec in keymap.ACTIONS:
            keys = self.keymap.get(spec.id, spec.keys)
            shown = ", ".join(self.get_key_display(Binding(k, "")) for k in keys.split(","))
            rows.append((shown, _(spec.help), spec.id))
        prompt_rows = [
            ("send", "enter", _("Send the prompt")),
            ("newline", "ctrl+j,alt+enter,shift+enter", _("New line in the prompt")),
        ]
        for binding_id, default, text in prompt_rows:
            keys = self.keymap.get(binding_id, default)
            shown = ", ".join(self.get_key_display(Binding(k, "")) for k in keys.split(","))
            rows.append((shown, text, binding_id))
        rows.append(("↑ / ↓", _("At the prompt's first/last line: earlier prompts"), "-"))
        rows.append(("↑ ↓ enter 1-9", _("In the messages (f4): select; copy it; copy code n"),
                     "log.*"))
        rows.append(("← → e f delete", _("In the messages: other versions; edit, fork or "
                                         "delete from here"), "log.*"))
        rows.append(("r p delete", _("In the conversation list: rename, pin, delete"),
                     "sidebar.*"))
        rows.append(("^p", _("Command palette: every action, every conversation"), "-"))
        return rows

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen(self.binding_rows()))

    async def run_spec(self, binding_id: str) -> None:
        """Run an action by binding id (the command palette uses this)."""
        spec = next(s for s in keymap.ACTIONS if s.id == binding_id)
        if spec.scope == "app":
            await self.run_action(spec.action)
            return
        if self.main_screen is not None:
            await self.run_action(spec.action, self.main_screen)

    async def open_conversation(self, cid: str) -> None:
        if self.main_screen is not None:
            await self.main_screen.open_conversation(cid)

    # -- actions of the app's keymap scope: the library and the other panels ------------------

    def action_templates(self, query: str = "") -> None:
        self.library.open_templates(query)

    def action_personas(self) -> None:
        self.library.open_personas()

    def action_memory(self) -> None:
        self.library.open_memory()

    def action_doctor(self) -> None:
        self.panels.open_doctor()

    def action_welcome(self) -> None:
        self.panels.open_welcome()

    def action_knowledge(self) -> None:
        self.panels.open_knowledge()

    def action_open_source(self) -> None:
        self.panels.open_source()

    def action_compare(self) -> None:
        self.panels.open_compare()

    def action_serve(self) -> None:
        self.panels.toggle_serving()

    def action_tools(self) -> None:
        from tui.app.screens.tools import ToolsScreen

        chat = self.main_screen
        if not isinstance(self.screen, ToolsScreen):
            self.push_screen(ToolsScreen(chat.meta.id if chat and chat.meta else None))

    def action_tune(self) -> None:
        from tui.app.screens.tune import TuneScreen

        if not isinstance(self.screen, TuneScreen):
            self.push_screen(TuneScreen())

    def action_mark_good(self) -> None:
        from tui.app.screens.tune import toggle_good_mark

        if self.main_screen is not None and self.screen is self.main_screen:
            toggle_good_mark(self, self.main_screen)
