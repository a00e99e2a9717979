"""The lmdesk Textual app: wires the store, the engine, themes and keys to the chat screen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.theme import Theme

from tui.app import gc_tuning, keymap
from tui.app.commands import ActionsProvider, ConversationsProvider, TemplatesProvider
from tui.app.library import LibraryActions
from tui.app.model_choice import ModelChoiceActions
from tui.app.model_manager import ModelManager, ModelSwitchFailed, record_usage
from tui.app.reply_job import ModelLoaded, ModelLoadFailed
from tui.app.screens.chat import ChatScreen
from tui.app.screens.help import HelpScreen
from tui.app.themes import DEFAULT_DARK, load_themes, problems_notice, stylesheet_path
from tui.app.tool_actions import ToolActions
from tui.config import Paths, Settings
from tui.doctor.machine import LlamaBuild
from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import Done, LoadParams, ModelInfo
from tui.models.endpoints import Endpoint
from tui.models.fit import FitEstimate
from tui.models.profiles import Profile
from tui.monitor import RateTracker, Sampler
from tui.serve import ApiServer
from tui.store import Store, StoreError, StoreReadOnly

EngineFactory = Callable[[LoadParams], Engine]


class LmdeskApp(LibraryActions, ModelChoiceActions, ToolActions, App[None]):
    """A terminal workstation for chatting with local language models."""

    TITLE = "lmdesk"
    COMMANDS: ClassVar = App.COMMANDS | {ActionsProvider, ConversationsProvider,
                                          TemplatesProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        *keymap.bindings("app"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012 (as Textual types it)

    model_state: reactive[str] = reactive("loading")
    """"loading", "ready" or "failed"."""

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
        super().__init__(css_path=stylesheet_path())
        self.first_frame_at: float | None = None
        """perf_counter() when the main screen was first painted (``lmdesk bench ui``)."""
        self.settings = settings
        self.paths = paths
        self.store = store
        self.model_path = model_path
        self.model_name = model_name
        self.model_error = ""
        self.engine_info: ModelInfo | None = None
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._engine_ready = threading.Event()
        self._notices = list(notices)
        self._closed = False
        self.show_welcome = show_welcome
        """Show the first-run welcome on a fresh store (tests turn it off)."""
        self.generation_lock = threading.Lock()
        """Held around every generation on the current engine (chat, compare, the API)."""
        self.api_server: ApiServer | None = None
        """The API serving the loaded model while the user chats (None when off)."""
        self.api_port = settings.serve_port
        self.doctor_llama: LlamaBuild | None = None
        """A llama.cpp probe result for the doctor screen (tests); None probes for real."""
        self.sampler: Sampler | None = None
        """Made on first use by the monitor panel; tests set a fake before running."""
        self.rates = RateTracker()
        self.models = ModelManager(engine_factory, on_watch=self._watch_pid,
                                   on_unwatch=self._unwatch_pid)
        self._profile: tuple[str, Profile] | None = None
        """(engine key, profile) of the last profile loaded: see ``profile``."""
        self.remote: Endpoint | None = None
        """The endpoint the current model runs on (None: it runs here)."""
        self.remote_timeout_s = 60.0

        themes = load_themes(paths.themes_dir)
        for theme in themes.themes:
            self.register_theme(theme)
        self._theme_problems = themes.problems
        good_keys, key_problems = keymap.check_keymap(settings.keymap)
        self._notices.extend(key_problems)
        self.keymap = good_keys
        self.set_keymap(good_keys)
        self._saved_theme = self._pick_theme()
        self.theme = self._saved_theme

    # -- start ---------------------------------------------------------------------------------

    def _pick_theme(self) -> str:
        wanted = self.settings.theme
        if wanted and wanted in self.available_themes:
            return wanted
        if wanted:
            self._notices.append(f"theme {wanted!r} not found; using {DEFAULT_DARK}")
        stored = None
        with suppress(StoreError):
            stored = self.store.get_setting("theme")
        if isinstance(stored, str) and stored in self.available_themes:
            return stored
        return DEFAULT_DARK

    def get_default_screen(self) -> Screen[None]:
        return ChatScreen()

    def mark_first_frame(self) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()

    def on_mount(self) -> None:
        if self.read_only:
            self.title = "lmdesk (read-only)"
        for notice in [*self.store.notices, *self._notices]:
            self.notify(notice, severity="warning", timeout=12)
        if self._theme_problems:
            self.notify(problems_notice(self._theme_problems), title="Themes",
                        severity="warning", timeout=12)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._load_model()
        if self.show_welcome:
            from tui.app.screens.welcome import WelcomeScreen, should_welcome

            if should_welcome(self):
                self.push_screen(WelcomeScreen(first_run=True))

    @property
    def read_only(self) -> bool:
        return bool(self.store.read_only)

    def _theme_changed(self, theme: Theme) -> None:
        if theme.name == self._saved_theme or self.read_only:
            return
        self._saved_theme = theme.name
        with self.guard("Could not save the theme choice"):
            self.store.set_setting("theme", theme.name)

    # -- the engine ----------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _load_model(self) -> None:
        """Runs in a thread: build and load the engine, then report."""
        error: str
        try:
            params = LoadParams(
                model_path=self.model_path, n_ctx=self.settings.n_ctx,
                n_threads=self.settings.n_threads, n_gpu_layers=self.settings.n_gpu_layers,
            )
            engine = self._engine_factory(params)
            info = engine.load()
        except EngineError as exc:
            error = str(exc)
        except Exception as exc:  # never let a load failure kill the app
            error = f"{type(exc).__name__}: {exc}"
        else:
            self._engine = engine
            self.engine_info = info
            self.models.add(self.model_path, self.model_name, engine, info)
            self.rates.set_context(0, info.n_ctx)
            self._engine_ready.set()
            self.post_message(ModelLoaded())
            return
        self.model_error = error
        self._engine_ready.set()
        self.post_message(ModelLoadFailed(error))

    def on_model_loaded(self, _event: ModelLoaded) -> None:
        self.model_state = "ready"

    def on_model_load_failed(self, event: ModelLoadFailed) -> None:
        self.model_state = "failed"
        self.notify(
            f"{event.error}\nThe app keeps running: browse, search and export still work.",
            title=f"{self.model_name} did not load", severity="error", timeout=20,
        )

    def wait_for_engine(self, cancel: threading.Event) -> Engine | None:
        """Block (in a worker thread) until the model is loaded; None if ``cancel`` is set.

        Raises EngineError when the load failed.
        """
        while not self._engine_ready.wait(0.05):
            if cancel.is_set():
                return None
        if self._engine is None:
            raise EngineError(f"The model is not loaded: {self.model_error}")
        return self._engine

    # -- more than one model (see model_manager.py) ---------------------------------------------

    def ensure_sampler(self) -> Sampler:
        """The monitor's sampler, made on first use, told about every loaded model's worker."""
        if self.sampler is None:
            self.sampler = Sampler()
        for entry in self.models.loaded():
            if entry.info.worker_pid > 0 and entry.info.worker_pid not in self.sampler.watched:
                self.sampler.watch(entry.info.worker_pid, entry.name)
        return self.sampler

    def _watch_pid(self, pid: int, label: str) -> None:
        if self.sampler is not None:
            self.sampler.watch(pid, label)

    def _unwatch_pid(self, pid: int) -> None:
        if self.sampler is not None:
            self.sampler.unwatch(pid)

    def busy_replying(self) -> bool:
        chat = next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)
        return chat is not None and chat.pane.job is not None

    def can_switch_model(self) -> bool:
        """Whether the model may change now; if not, say why in a notice."""
        if self.busy_replying():
            self.notify("Wait for the reply to finish (esc stops it), then switch.",
                        severity="warning")
            return False
        if self.model_state == "loading":
            self.notify(f"{self.model_name} is still loading: switch once it is ready.",
                        severity="warning")
            return False
        return True

    def use_model(self, path: str, name: str, estimate: FitEstimate | None = None) -> bool:
        """Make ``path`` the current model and the open conversation's model. False (and a
        notice) while a reply is being written."""
        if not self.can_switch_model():
            return False
        chat = next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)
        meta = chat.meta if chat is not None else None
        if meta is not None and not self.read_only:
            with self.guard("Could not save the conversation's model"):
                fresh = self.store.get_conversation(meta.id).extra  # others write extra too
                extra = {**fresh, "model_path": path}
                extra.pop("profile", None)  # a plain model: no profile
                extra.pop("endpoint", None)  # runs here again
                self.store.update_conversation(meta.id, model=name, extra=extra)
                meta.model, meta.extra = name, extra
        self.switch_model(path, name, estimate)
        return True

    def switch_model(self, path: str, name: str, estimate: FitEstimate | None = None) -> None:
        if path == self.model_path and self.model_state == "ready" and self._engine is not None:
            return
        self._engine_ready.clear()
        self.model_name = name
        self.model_state = "loading"
        self._switch_worker(path, name, estimate)

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _switch_worker(self, path: str, name: str, estimate: FitEstimate | None) -> None:
        """Runs in a thread: load (or reuse) the model at ``path`` and make it current."""
        try:
            params = LoadParams(
                model_path=path, n_ctx=self.settings.n_ctx,
                n_threads=self.settings.n_threads, n_gpu_layers=self.settings.n_gpu_layers,
            )
            entry = self.models.ensure(params, name, estimate)
        except Exception as exc:  # never let a load failure kill the app
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.post_message(ModelSwitchFailed(name, error))
            return
        self._engine = entry.engine
        self.engine_info = entry.info
        self.model_path = path
        self.remote = None
        self.rates.set_context(0, entry.info.n_ctx)
        self._engine_ready.set()
        self.post_message(ModelLoaded())

    # -- replies and closing -------------------------------------------------------------------

    def reply_done(self, model: str, done: Done | None) -> None:
        """The reply hook: feed the rate tracker, count the model's usage (UI thread)."""
        self.rates.finish(done.stats if done is not None else None)
        if done is None or self.read_only or done.stats.generated_tokens <= 0:
            return
        with self.guard("Could not record the model's usage"):
            record_usage(self.store, model, done.stats)
        self.record_profile_usage(done)

    def close_engine(self) -> None:
        """Stop any reply, save it as stopped, unload the model. Safe to call twice."""
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
        engine = self._engine
        if engine is not None:
            try:
                engine.cancel()
                engine.unload()
            except Exception:
                pass
        self.models.unload_all()
        if self.sampler is not None:
            self.sampler.close()

    async def action_quit(self) -> None:
        self.close_engine()
        self.exit()

    def on_unmount(self) -> None:
        self.close_engine()
        gc_tuning.release()

    # -- helpers for screens -------------------------------------------------------------------

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Report a store or disk failure as a notification instead of a traceback."""
        try:
            yield
        except StoreReadOnly:
            self.notify(f"{what}: the data folder is read-only here.", severity="warning")
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
            rows.append((shown, spec.help, spec.id))
        prompt_rows = [
            ("send", "enter", "Send the prompt"),
            ("newline", "ctrl+j,alt+enter,shift+enter", "New line in the prompt"),
        ]
        for binding_id, default, text in prompt_rows:
            keys = self.keymap.get(binding_id, default)
            shown = ", ".join(self.get_key_display(Binding(k, "")) for k in keys.split(","))
            rows.append((shown, text, binding_id))
        rows.append(("↑ / ↓", "At the prompt's first/last line: earlier prompts", "-"))
        rows.append(("↑ ↓ enter 1-9", "In the messages (f4): select; copy it; copy code n",
                     "log.*"))
        rows.append(("r p delete", "In the conversation list: rename, pin, delete",
                     "sidebar.*"))
        rows.append(("^p", "Command palette: every action, every conversation", "-"))
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
        chat = next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)
        if chat is not None:
            await self.run_action(spec.action, chat)

    async def open_conversation(self, cid: str) -> None:
        chat = next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)
        if chat is not None:
            await chat.open_conversation(cid)
