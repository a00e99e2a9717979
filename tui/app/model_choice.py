"""Choosing where the current model comes from: remote endpoints and model profiles.

``ModelChoiceActions`` is mixed into ``LmdeskApp`` (see ``tui/models/endpoints.py``,
``tui/models/profiles.py`` and their screens).
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any, cast

from textual import work

from tui.app.model_manager import ModelSwitchFailed, ModelUnloaded
from tui.app.reply_job import ModelLoaded
from tui.engine.errors import EngineError
from tui.engine.protocol import Done, LoadParams, SamplingParams
from tui.models.endpoints import Endpoint
from tui.models.profiles import Profile

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


class ModelChoiceActions:
    """Remote endpoints and model profiles for ``LmdeskApp`` (a mixin)."""

    @property
    def _lm(self) -> LmdeskApp:
        return cast("LmdeskApp", self)

    # -- remote endpoints (tui/models/endpoints.py, screens/endpoints.py) -----------------------

    def remote_mark(self) -> str:
        """"⇄ name" while the current model runs on a remote endpoint, else ""."""
        return f"⇄ {self._lm.remote.name}" if self._lm.remote is not None else ""

    def use_endpoint(self, endpoint: Endpoint, model: str) -> bool:
        """Run the open conversation on ``model`` at ``endpoint`` (saved in its extra)."""
        if not self._lm.can_switch_model():
            return False
        chat = self._lm._chat_screen()
        meta = chat.meta if chat is not None else None
        if meta is not None and not self._lm.read_only:
            with self._lm.guard("Could not save the conversation's model"):
                fresh = self._lm.store.get_conversation(meta.id).extra  # others write extra too
                extra = {k: v for k, v in fresh.items() if k not in ("model_path", "profile")}
                extra["endpoint"] = {"id": endpoint.id, "model": model, "name": endpoint.name}
                self._lm.store.update_conversation(meta.id, model=model, extra=extra)
                meta.model, meta.extra = model, extra
                if chat is not None:
                    chat.refresh_sidebar()
        self._lm.switch_remote(endpoint, model)
        return True

    def switch_remote(self, endpoint: Endpoint, model: str) -> None:
        from tui.models.endpoints import remote_key

        if (remote_key(endpoint.base_url, model) == self._lm.model_path
                and self._lm.model_state == "ready" and self._lm._engine is not None):
            return
        self._lm._engine_ready.clear()
        self._lm.model_name = model
        self._lm.model_state = "loading"
        self._lm._remote_worker(endpoint, model)

    def follow_endpoint(self, extra: Any) -> bool:
        """Switch to the endpoint a conversation's ``extra`` names; False when it names none."""
        from tui.models.endpoints import EndpointLibrary, remote_key

        ref = extra.get("endpoint") if isinstance(extra, dict) else None
        if not isinstance(ref, dict):
            return False
        model = ref.get("model")
        endpoint = None
        with suppress(Exception):
            endpoint = EndpointLibrary(self._lm.store).get(str(ref.get("id")))
        if endpoint is None or not isinstance(model, str):
            self._lm.notify(f"This conversation's endpoint {ref.get('name') or ''} is not "
                        f"configured any more; it goes on with {self._lm.model_name}.",
                        severity="warning")
            return True
        lm = self._lm
        if remote_key(endpoint.base_url, model) != lm.model_path and not lm.busy_replying():
            self._lm.switch_remote(endpoint, model)
        return True

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _remote_worker(self, endpoint: Endpoint, model: str) -> None:
        """Runs in a thread: reach ``model`` at ``endpoint`` and make it current."""
        from tui.engine.remote import RemoteEngine
        from tui.models.endpoints import remote_key

        key = remote_key(endpoint.base_url, model)
        try:
            entry = self._lm.models.ensure_remote(key, model, lambda: RemoteEngine(
                endpoint.base_url, endpoint.api_key, model, timeout_s=self._lm.remote_timeout_s))
        except Exception as exc:  # never let a failure kill the app
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self._lm.post_message(ModelSwitchFailed(f"{model} at {endpoint.name}", error))
            return
        self._lm._engine = entry.engine
        self._lm.engine_info = entry.info
        self._lm.model_path = key
        self._lm.remote = endpoint
        self._lm.rates.set_context(0, entry.info.n_ctx)
        self._lm._engine_ready.set()
        self._lm.post_message(ModelLoaded())

    def on_model_switch_failed(self, event: ModelSwitchFailed) -> None:
        """The new model did not load: go back to the previous one if it is still loaded."""
        previous = self._lm.models.get(self._lm.model_path)
        if previous is not None and previous.engine.alive:
            self._lm.models.current_path = previous.path
            self._lm._engine, self._lm.engine_info = previous.engine, previous.info
            self._lm.model_name = previous.name
            self._lm.model_state = "ready"
        else:
            self._lm._engine = None
            self._lm.model_error = event.error
            self._lm.model_state = "failed"
        self._lm._engine_ready.set()
        self._lm.notify(f"{event.error}", title=f"{event.name} did not load", severity="error",
                    timeout=20)

    def unload_model(self, path: str) -> None:
        if path == self._lm.model_path and self._lm.busy_replying():
            self._lm.notify("Wait for the reply to finish first.", severity="warning")
            return
        self._lm._unload_worker(path)

    @work(thread=True, group="model-unload", exit_on_error=False)
    def _unload_worker(self, path: str) -> None:
        current = path == self._lm.model_path
        if current:
            self._lm._engine_ready.clear()
        self._lm.models.unload(path)
        if current:
            self._lm._engine = None
            self._lm.model_error = "it was unloaded: pick a model with the model switcher"
            self._lm._engine_ready.set()
        self._lm.post_message(ModelUnloaded(path, current))

    def on_model_unloaded(self, event: ModelUnloaded) -> None:
        if event.was_current:
            self._lm.model_state = "failed"
        self._lm.notify(f"Unloaded {event.path}.", title="Models")


    # -- model profiles (tui/models/profiles.py, screens/profiles.py) ---------------------------

    @property
    def profile(self) -> Profile | None:
        """The profile the current engine was loaded for (None: a plain model)."""
        if self._lm._profile is None or self._lm._profile[0] != self._lm.model_path:
            return None
        return self._lm._profile[1]

    @property
    def model_label(self) -> str:
        """"smollm2-135m (terse-coder)" with a profile, else the model's name."""
        profile = self._lm.profile
        return f"{self._lm.model_name} ({profile.nickname})" if profile else self._lm.model_name

    def profile_sampling(self, base: SamplingParams) -> SamplingParams:
        """``base`` with the current profile's sampling (unchanged, with a notice, if bad)."""
        from tui.models.profiles import ProfileError, apply_sampling

        profile = self._lm.profile
        if profile is None:
            return base
        try:
            return apply_sampling(profile, base)
        except ProfileError as exc:
            self._lm.notify(f"{exc}; the app's sampling is used.", severity="warning")
            return base

    def record_profile_usage(self, done: Done) -> None:
        from tui.models.profiles import ProfileError, ProfileLibrary

        profile = self._lm.profile
        if profile is None:
            return
        with self._lm.guard("Could not record the profile's usage"), suppress(ProfileError):
            ProfileLibrary(self._lm.store).record_usage(profile.id, done.stats)  # gone: skip

    def use_profile(self, profile: Profile) -> bool:
        """Load ``profile``'s model with its parameters for the open conversation (saved in
        its ``extra["profile"]``). False (and a notice) when it cannot be used now."""
        from tui.models.profiles import ProfileError, check_files, load_params

        if not self._lm.can_switch_model():
            return False
        try:
            check_files(profile)
            load_params(profile)
        except ProfileError as exc:
            self._lm.notify(str(exc), title=f"{profile.nickname} not used", severity="error",
                        timeout=15)
            return False
        chat = self._lm._chat_screen()
        meta = chat.meta if chat is not None else None
        if meta is not None and not self._lm.read_only:
            with self._lm.guard("Could not save the conversation's profile"):
                fresh = self._lm.store.get_conversation(meta.id).extra  # others write extra too
                extra = {k: v for k, v in fresh.items() if k != "endpoint"}
                extra["model_path"] = profile.model_path
                extra["profile"] = profile.id
                self._lm.store.update_conversation(meta.id, model=profile.model_name, extra=extra)
                meta.model, meta.extra = profile.model_name, extra
                self._lm.conversation_extra_changed(meta.id, extra)
        self._lm.switch_profile(profile)
        return True

    def switch_profile(self, profile: Profile) -> None:
        from tui.models.profiles import ProfileError, engine_key, load_params

        try:
            params = load_params(profile)
        except ProfileError as exc:
            self._lm.notify(str(exc), severity="error")
            return
        key = engine_key(params)
        if (key == self._lm.model_path and self._lm.profile is not None
                and self._lm.profile.id == profile.id and self._lm.model_state == "ready"
                and self._lm._engine is not None):
            self._lm._profile = (key, profile)  # its sampling may have changed
            return
        self._lm._engine_ready.clear()
        self._lm.model_name = profile.model_name
        self._lm.model_state = "loading"
        self._lm._profile_worker(profile, params, key)

    def follow_profile(self, extra: Any) -> bool:
        """Switch to the profile a conversation's ``extra`` names; False when it names none
        (or a deleted one: the conversation then follows its model path)."""
        from tui.models.profiles import ProfileLibrary

        ref = extra.get("profile") if isinstance(extra, dict) else None
        if not isinstance(ref, str) or not ref:
            return False
        profile = None
        with suppress(Exception):
            profile = ProfileLibrary(self._lm.store).find(ref)
        if profile is None:
            return False
        if not self._lm.busy_replying():
            self._lm.switch_profile(profile)
        return True

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _profile_worker(self, profile: Profile, params: LoadParams, key: str) -> None:
        """Runs in a thread: load (or reuse) the profile's engine and make it current."""
        from tui.models.profiles import ProfileError, check_files

        name = profile.model_name
        try:
            check_files(profile)
            entry = self._lm.models.ensure(params, name, key=key)
        except ProfileError as exc:
            self._lm.post_message(ModelSwitchFailed(profile.label, str(exc)))
            return
        except Exception as exc:  # never let a load failure kill the app
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self._lm.post_message(ModelSwitchFailed(profile.label, error))
            return
        self._lm._profile = (key, profile)
        self._lm._engine = entry.engine
        self._lm.engine_info = entry.info
        self._lm.model_path = key
        self._lm.remote = None
        self._lm.rates.set_context(0, entry.info.n_ctx)
        self._lm._engine_ready.set()
        self._lm.post_message(ModelLoaded())
