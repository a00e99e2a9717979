"""From a typed model choice to what runs it: a file with its load parameters (a plain model
or a profile), or a model on a remote endpoint.

``ModelChoice`` (``LocalModel | ProfileModel | EndpointModel``) is what a conversation keeps
in its options; ``resolve`` reads the profile or endpoint it names and the settings, and gives
a ``ResolvedModel``: the engine's key, the names to show, and how to build the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tui.engine.protocol import LoadParams
from tui.i18n import _
from tui.session.params import LoadOverrides, load_params
from tui.store import EndpointModel, LocalModel, ModelChoice, ProfileModel

if TYPE_CHECKING:
    from collections.abc import Callable

    from tui.config import Settings
    from tui.engine.base import Engine
    from tui.models.endpoints import Endpoint
    from tui.models.profiles import Profile
    from tui.store import Store

    EngineFactory = Callable[[LoadParams], Engine]


class ChoiceError(Exception):
    """The chosen model cannot be used (a file gone, a profile or endpoint deleted)."""


@dataclass(frozen=True)
class ResolvedModel:
    choice: ModelChoice
    key: str
    """Names the engine: the file for a plain load, the profile's parameters, or
    ``remote:URL#model`` (``tui.models.endpoints.remote_key``)."""
    name: str
    """The model's name ("smollm2-135m", or the model the remote server knows)."""
    params: LoadParams | None = None
    """Local models: how to load the file."""
    profile: Profile | None = None
    endpoint: Endpoint | None = None
    notes: tuple[str, ...] = ()
    """What was decided on the user's behalf (a deleted profile's model used instead...)."""

    @property
    def label(self) -> str:
        """"smollm2-135m (terse-coder)" for a profile, else the model's name."""
        return f"{self.name} ({self.profile.nickname})" if self.profile is not None else self.name

    @property
    def remote(self) -> bool:
        return self.endpoint is not None

    def build(self, factory: EngineFactory, *, remote_timeout_s: float = 60.0) -> Engine:
        """A new, not yet loaded engine for this model."""
        if self.endpoint is not None:
            from tui.engine.remote import RemoteEngine

            return RemoteEngine(self.endpoint.base_url, self.endpoint.api_key, self.name,
                                timeout_s=remote_timeout_s)
        assert self.params is not None
        return factory(self.params)


def read_chat_template(path: str) -> str:
    """The text of a Jinja chat-template file; ``ChoiceError`` when it cannot be read."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChoiceError(_("cannot read the chat template {path}: {exc}",
                            path=path, exc=exc)) from None
    if not text.strip():
        raise ChoiceError(_("the chat template {path} is empty", path=path))
    return text


def resolve(choice: ModelChoice, *, settings: Settings, store: Store | None,
            overrides: LoadOverrides | None = None) -> ResolvedModel:
    """What runs ``choice`` now. Raises ``ChoiceError`` with one line when it cannot run."""
    from tui.models.profiles import ProfileError, check_files, engine_key

    if isinstance(choice, EndpointModel):
        from tui.models.endpoints import EndpointLibrary, remote_key

        endpoint = EndpointLibrary(store).get(choice.endpoint_id) if store is not None else None
        if endpoint is None:
            raise ChoiceError(_("the endpoint {value} is not configured any more",
                                value=choice.endpoint_name or choice.endpoint_id))
        return ResolvedModel(choice, remote_key(endpoint.base_url, choice.model), choice.model,
                             endpoint=endpoint)
    notes: list[str] = []
    profile: Profile | None = None
    path: str
    name: str
    if isinstance(choice, ProfileModel):
        from tui.models.profiles import ProfileLibrary

        profile = ProfileLibrary(store).find(choice.profile_id) if store is not None else None
        if profile is None:
            if not choice.model_path:
                raise ChoiceError(_("the profile {value} was deleted",
                                    value=choice.name or choice.profile_id))
            notes.append(_("the profile {value} was deleted: its model runs with the default "
                           "parameters", value=choice.name or choice.profile_id))
            path, name = choice.model_path, Path(choice.model_path).stem
        else:
            try:
                check_files(profile)
            except ProfileError as exc:
                raise ChoiceError(str(exc)) from None
            path = profile.model_path
            name = profile.model_name or Path(path).stem
    else:
        assert isinstance(choice, LocalModel)
        path, name = choice.path, choice.name or Path(choice.path).stem
    params = load_params(settings, path, profile=profile, overrides=overrides)
    if profile is not None and profile.chat_template:
        params = replace(params, chat_template=read_chat_template(profile.chat_template))
    if params.rpc_servers:
        from tui.rpc.probe import offline_refusal

        refusal = offline_refusal(params.rpc_servers)
        if refusal is not None:
            raise ChoiceError(refusal)
    key = engine_key(params) if profile is not None or params.chat_template \
        or params.rpc_servers else path
    return ResolvedModel(choice, key, name, params=params, profile=profile, notes=tuple(notes))


def choice_for_name(name: str | None, *, settings: Settings, store: Store | None) -> ModelChoice:
    """What ``--model NAME`` means: a model profile's nickname, else a GGUF path or a model
    name (``tui.models.registry``); None is the settings' model or the packaged one.
    Raises ``ChoiceError`` when nothing answers to the name."""
    from tui.models.registry import ModelNotFound, resolve_model

    wanted = name or settings.model
    if wanted and store is not None:
        from tui.models.profiles import ProfileLibrary

        try:
            profile = ProfileLibrary(store).find(wanted)
        except Exception:  # an unreadable profiles table: fall back to the file names
            profile = None
        if profile is not None:
            return ProfileModel(profile.id, profile.nickname, profile.model_path)
    try:
        ref = resolve_model(wanted, settings.model_dirs)
    except ModelNotFound as exc:
        raise ChoiceError(str(exc)) from None
    return LocalModel(str(ref.path), ref.name)
