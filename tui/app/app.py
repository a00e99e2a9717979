"""The lmdesk Textual app: wires the store, the engine, themes and keys to the chat screen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.theme import Theme

from tui.app import gc_tuning, keymap
from tui.app.commands import ActionsProvider, ConversationsProvider, TemplatesProvider
from tui.app.library import LibraryActions
from tui.app.model_manager import (
    ModelManager,
    ModelSwitchFailed,
    ModelUnloaded,
    record_usage,
)
from tui.app.reply_job import ModelLoaded, ModelLoadFailed
from tui.app.screens.chat import ChatScreen
from tui.app.screens.help import HelpScreen
from tui.app.themes import DEFAULT_DARK, load_themes, problems_notice, stylesheet_path
from tui.config import Paths, Settings
from tui.doctor.machine import LlamaBuild
from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    LoadParams,
    ModelInfo,
    SamplingParams,
)
from tui.models.endpoints import Endpoint
from tui.models.fit import FitEstimate
from tui.models.profiles import Profile
from tui.monitor import RateTracker, Sampler
from tui.serve import DEFAULT_PORT, ApiServer
from tui.store import Store, StoreError, StoreReadOnly

EngineFactory = Callable[[LoadParams], Engine]


class LmdeskApp(LibraryActions, App[None]):
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
        self.api_port = DEFAULT_PORT
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

    def use_model(self, path: str, name: str, estimate: FitEstimate | None = None) -> bool:
        """Make ``path`` the current model and the open conversation's model. False (and a
        notice) while a reply is being written."""
        if self.busy_replying():
            self.notify("Wait for the reply to finish (esc stops it), then switch.",
                        severity="warning")
            return False
        if self.model_state == "loading":
            self.notify(f"{self.model_name} is still loading: switch once it is ready.",
                        severity="warning")
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

    # -- remote endpoints (tui/models/endpoints.py, screens/endpoints.py) -----------------------

    def remote_mark(self) -> str:
        """"⇄ name" while the current model runs on a remote endpoint, else ""."""
        return f"⇄ {self.remote.name}" if self.remote is not None else ""

    def use_endpoint(self, endpoint: Endpoint, model: str) -> bool:
        """Run the open conversation on ``model`` at ``endpoint`` (saved in its extra)."""
        if self.busy_replying():
            self.notify("Wait for the reply to finish (esc stops it), then switch.",
                        severity="warning")
            return False
        if self.model_state == "loading":
            self.notify(f"{self.model_name} is still loading: switch once it is ready.",
                        severity="warning")
            return False
        chat = self._chat_screen()
        meta = chat.meta if chat is not None else None
        if meta is not None and not self.read_only:
            with self.guard("Could not save the conversation's model"):
                fresh = self.store.get_conversation(meta.id).extra  # others write extra too
                extra = {k: v for k, v in fresh.items() if k not in ("model_path", "profile")}
                extra["endpoint"] = {"id": endpoint.id, "model": model, "name": endpoint.name}
                self.store.update_conversation(meta.id, model=model, extra=extra)
                meta.model, meta.extra = model, extra
                if chat is not None:
                    chat.refresh_sidebar()
        self.switch_remote(endpoint, model)
        return True

    def switch_remote(self, endpoint: Endpoint, model: str) -> None:
        from tui.models.endpoints import remote_key

        if (remote_key(endpoint.base_url, model) == self.model_path
                and self.model_state == "ready" and self._engine is not None):
            return
        self._engine_ready.clear()
        self.model_name = model
        self.model_state = "loading"
        self._remote_worker(endpoint, model)

    def follow_endpoint(self, extra: Any) -> bool:
        """Switch to the endpoint a conversation's ``extra`` names; False when it names none."""
        from tui.models.endpoints import EndpointLibrary, remote_key

        ref = extra.get("endpoint") if isinstance(extra, dict) else None
        if not isinstance(ref, dict):
            return False
        model = ref.get("model")
        endpoint = None
        with suppress(Exception):
            endpoint = EndpointLibrary(self.store).get(str(ref.get("id")))
        if endpoint is None or not isinstance(model, str):
            self.notify(f"This conversation's endpoint {ref.get('name') or ''} is not "
                        f"configured any more; it goes on with {self.model_name}.",
                        severity="warning")
            return True
        if remote_key(endpoint.base_url, model) != self.model_path and not self.busy_replying():
            self.switch_remote(endpoint, model)
        return True

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _remote_worker(self, endpoint: Endpoint, model: str) -> None:
        """Runs in a thread: reach ``model`` at ``endpoint`` and make it current."""
        from tui.engine.remote import RemoteEngine
        from tui.models.endpoints import remote_key

        key = remote_key(endpoint.base_url, model)
        try:
            entry = self.models.ensure_remote(key, model, lambda: RemoteEngine(
                endpoint.base_url, endpoint.api_key, model, timeout_s=self.remote_timeout_s))
        except Exception as exc:  # never let a failure kill the app
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.post_message(ModelSwitchFailed(f"{model} at {endpoint.name}", error))
            return
        self._engine = entry.engine
        self.engine_info = entry.info
        self.model_path = key
        self.remote = endpoint
        self.rates.set_context(0, entry.info.n_ctx)
        self._engine_ready.set()
        self.post_message(ModelLoaded())

    def on_model_switch_failed(self, event: ModelSwitchFailed) -> None:
        """The new model did not load: go back to the previous one if it is still loaded."""
        previous = self.models.get(self.model_path)
        if previous is not None and previous.engine.alive:
            self.models.current_path = previous.path
            self._engine, self.engine_info = previous.engine, previous.info
            self.model_name = previous.name
            self.model_state = "ready"
        else:
            self._engine = None
            self.model_error = event.error
            self.model_state = "failed"
        self._engine_ready.set()
        self.notify(f"{event.error}", title=f"{event.name} did not load", severity="error",
                    timeout=20)

    def unload_model(self, path: str) -> None:
        if path == self.model_path and self.busy_replying():
            self.notify("Wait for the reply to finish first.", severity="warning")
            return
        self._unload_worker(path)

    @work(thread=True, group="model-unload", exit_on_error=False)
    def _unload_worker(self, path: str) -> None:
        current = path == self.model_path
        if current:
            self._engine_ready.clear()
        self.models.unload(path)
        if current:
            self._engine = None
            self.model_error = "it was unloaded: pick a model with the model switcher"
            self._engine_ready.set()
        self.post_message(ModelUnloaded(path, current))

    def on_model_unloaded(self, event: ModelUnloaded) -> None:
        if event.was_current:
            self.model_state = "failed"
        self.notify(f"Unloaded {event.path}.", title="Models")

    # -- model profiles (tui/models/profiles.py, screens/profiles.py) ---------------------------

    @property
    def profile(self) -> Profile | None:
        """The profile the current engine was loaded for (None: a plain model)."""
        if self._profile is None or self._profile[0] != self.model_path:
            return None
        return self._profile[1]

    @property
    def model_label(self) -> str:
        """"smollm2-135m (terse-coder)" with a profile, else the model's name."""
        profile = self.profile
        return f"{self.model_name} ({profile.nickname})" if profile else self.model_name

    def profile_sampling(self, base: SamplingParams) -> SamplingParams:
        """``base`` with the current profile's sampling (unchanged, with a notice, if bad)."""
        from tui.models.profiles import ProfileError, apply_sampling

        profile = self.profile
        if profile is None:
            return base
        try:
            return apply_sampling(profile, base)
        except ProfileError as exc:
            self.notify(f"{exc}; the app's sampling is used.", severity="warning")
            return base

    def record_profile_usage(self, done: Done) -> None:
        from tui.models.profiles import ProfileError, ProfileLibrary

        profile = self.profile
        if profile is None:
            return
        with self.guard("Could not record the profile's usage"), suppress(ProfileError):
            ProfileLibrary(self.store).record_usage(profile.id, done.stats)  # gone: skip

    def use_profile(self, profile: Profile) -> bool:
        """Load ``profile``'s model with its parameters for the open conversation (saved in
        its ``extra["profile"]``). False (and a notice) when it cannot be used now."""
        from tui.models.profiles import ProfileError, check_files, load_params

        if self.busy_replying():
            self.notify("Wait for the reply to finish (esc stops it), then switch.",
                        severity="warning")
            return False
        if self.model_state == "loading":
            self.notify(f"{self.model_name} is still loading: switch once it is ready.",
                        severity="warning")
            return False
        try:
            check_files(profile)
            load_params(profile)
        except ProfileError as exc:
            self.notify(str(exc), title=f"{profile.nickname} not used", severity="error",
                        timeout=15)
            return False
        chat = self._chat_screen()
        meta = chat.meta if chat is not None else None
        if meta is not None and not self.read_only:
            with self.guard("Could not save the conversation's profile"):
                fresh = self.store.get_conversation(meta.id).extra  # others write extra too
                extra = {k: v for k, v in fresh.items() if k != "endpoint"}
                extra["model_path"] = profile.model_path
                extra["profile"] = profile.id
                self.store.update_conversation(meta.id, model=profile.model_name, extra=extra)
                meta.model, meta.extra = profile.model_name, extra
                self.conversation_extra_changed(meta.id, extra)
        self.switch_profile(profile)
        return True

    def switch_profile(self, profile: Profile) -> None:
        from tui.models.profiles import ProfileError, engine_key, load_params

        try:
            params = load_params(profile)
        except ProfileError as exc:
            self.notify(str(exc), severity="error")
            return
        key = engine_key(params)
        if (key == self.model_path and self.profile is not None
                and self.profile.id == profile.id and self.model_state == "ready"
                and self._engine is not None):
            self._profile = (key, profile)  # its sampling may have changed
            return
        self._engine_ready.clear()
        self.model_name = profile.model_name
        self.model_state = "loading"
        self._profile_worker(profile, params, key)

    def follow_profile(self, extra: Any) -> bool:
        """Switch to the profile a conversation's ``extra`` names; False when it names none
        (or a deleted one: the conversation then follows its model path)."""
        from tui.models.profiles import ProfileLibrary

        ref = extra.get("profile") if isinstance(extra, dict) else None
        if not isinstance(ref, str) or not ref:
            return False
        profile = None
        with suppress(Exception):
            profile = ProfileLibrary(self.store).find(ref)
        if profile is None:
            return False
        if not self.busy_replying():
            self.switch_profile(profile)
        return True

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _profile_worker(self, profile: Profile, params: LoadParams, key: str) -> None:
        """Runs in a thread: load (or reuse) the profile's engine and make it current."""
        from tui.models.profiles import ProfileError, check_files

        name = profile.model_name
        try:
            check_files(profile)
            entry = self.models.ensure(params, name, key=key)
        except ProfileError as exc:
            self.post_message(ModelSwitchFailed(profile.label, str(exc)))
            return
        except Exception as exc:  # never let a load failure kill the app
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.post_message(ModelSwitchFailed(profile.label, error))
            return
        self._profile = (key, profile)
        self._engine = entry.engine
        self.engine_info = entry.info
        self.model_path = key
        self.remote = None
        self.rates.set_context(0, entry.info.n_ctx)
        self._engine_ready.set()
        self.post_message(ModelLoaded())

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

    # -- doctor, knowledge bases, compare, serve -----------------------------------------------

    def acquire_generation(self, cancel: threading.Event) -> bool:
        """Take ``generation_lock`` (in a worker thread); False if ``cancel`` is set first."""
        while not self.generation_lock.acquire(timeout=0.05):
            if cancel.is_set():
                return False
        return True

    def locked_generate(
        self, engine: Engine, messages: Sequence[ChatMessage], sampling: SamplingParams,
        cancel: threading.Event,
    ) -> Iterator[EngineEvent]:
        """``engine.generate`` holding ``generation_lock`` (the API shares the engine); yields
        nothing when ``cancel`` is set while waiting for the lock."""
        if not self.acquire_generation(cancel):
            return
        try:
            yield from engine.generate(messages, sampling)
        finally:
            self.generation_lock.release()

    def _chat_screen(self) -> ChatScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)

    def action_doctor(self) -> None:
        from tui.app.screens.doctor import DoctorScreen

        if not isinstance(self.screen, DoctorScreen):
            self.push_screen(DoctorScreen())

    def action_welcome(self) -> None:
        from tui.app.screens.welcome import WelcomeScreen

        if not isinstance(self.screen, WelcomeScreen):
            self.push_screen(WelcomeScreen())

    def action_knowledge(self) -> None:
        from tui.app.screens.knowledge import KnowledgeScreen

        chat = self._chat_screen()
        if not isinstance(self.screen, KnowledgeScreen):
            self.push_screen(KnowledgeScreen(chat.meta.id if chat and chat.meta else None))

    def conversation_extra_changed(self, cid: str, extra: dict[str, Any]) -> None:
        """A screen changed a conversation's ``extra``: keep the open one's copy in step."""
        chat = self._chat_screen()
        if chat is None:
            return
        for meta in (chat.meta, chat.pane.meta):
            if meta is not None and meta.id == cid:
                meta.extra = dict(extra)

    def action_open_source(self) -> None:
        """Open a passage cited under the selected reply (else the last one)."""
        from tui.app.screens.knowledge import SourceScreen, source_dicts
        from tui.app.screens.text_input import TextInputScreen

        chat = self._chat_screen()
        message = chat.pane.copy_source() if chat is not None else None
        if message is not None and message.role != "assistant":
            message = next((m for m in reversed(chat.pane.history) if m.role == "assistant"),
                           None) if chat is not None else None
        sources = source_dicts(message.stats if message is not None else None)
        if not sources:
            self.notify("That reply cites no source.")
            return
        if len(sources) == 1:
            self.push_screen(SourceScreen(sources[0]))
            return

        def chosen(value: str | None) -> None:
            if value is None:
                return
            match = next((s for i, s in enumerate(sources)
                          if str(s.get("n", i + 1)) == value.strip("[] ")), None)
            if match is None:
                self.notify(f"There is no source [{value}].", severity="warning")
            else:
                self.push_screen(SourceScreen(match))

        numbers = ", ".join(str(s.get("n", i + 1)) for i, s in enumerate(sources))
        self.push_screen(TextInputScreen("Open a source", hint=f"Its number: {numbers}."),
                         chosen)

    def action_compare(self) -> None:
        from tui.app.screens.compare import CompareScreen

        chat = self._chat_screen()
        if not isinstance(self.screen, CompareScreen):
            self.push_screen(CompareScreen(
                conversation_id=chat.meta.id if chat and chat.meta else None))

    def action_serve(self) -> None:
        """Start the API on loopback with the loaded model; a second press stops it."""
        from tui.app.serve_share import start_api

        server = self.api_server
        if server is not None:
            self.api_server = None
            self._stop_api(server)
            return
        engine = self._engine
        if engine is None or self.model_state != "ready":
            self.notify("Wait for the model to load, then serve it.", severity="warning")
            return
        try:
            self.api_server = start_api(engine, self.model_name, self.generation_lock,
                                        self.api_port)
        except Exception as exc:  # a taken port, mostly
            self.notify(f"{exc}", title="Could not start the API", severity="error", timeout=12)
            return
        self.notify(f"Serving {self.model_name} at {self.api_server.url} (loopback only). "
                    f"{self.key_for('serve')} again stops it.", title="API on")

    @work(thread=True, group="api-stop", exit_on_error=False)
    def _stop_api(self, server: ApiServer) -> None:
        from tui.app.serve_share import stop_api

        try:
            stop_api(server)
        except Exception as exc:
            self.call_from_thread(self.notify, f"{exc}", title="Stopping the API failed",
                                  severity="error")
            return
        self.call_from_thread(self.notify, "The API is stopped.", title="API off")

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
