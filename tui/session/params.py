"""Settings into engine parameters: the one place that builds ``LoadParams`` and
``SamplingParams`` for the app, ``ask`` and ``serve``.

Precedence, lowest first: the engine's own defaults, config.toml (``Settings``), a model
profile, a persona's sampling preset, the conversation's options, then what this run was
asked for on the command line or in the request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.engine.protocol import LoadParams, SamplingParams
from tui.i18n import _

if TYPE_CHECKING:
    from tui.config import Settings
    from tui.models.profiles import Profile
    from tui.prompting.personas import Persona
    from tui.store import ConversationOptions


KV_STATE_FOLDER = "kv-states"


def with_kv_states(params: LoadParams, data_dir: Path) -> LoadParams:
    """``params`` keeping conversation KV states across restarts in the data folder (unless
    the caller chose a folder already)."""
    if params.kv_state_dir is not None:
        return params
    return dataclasses.replace(params, kv_state_dir=str(data_dir / KV_STATE_FOLDER))


CORES_FOLDER = "generating"


def with_core_share(params: LoadParams, cache_dir: Path) -> LoadParams:
    """``params`` splitting the cores with the other models generating on this machine (the
    compare view, serve beside the app): they meet in the cache folder."""
    if params.share_cores_dir is not None:
        return params
    return dataclasses.replace(params, share_cores_dir=str(cache_dir / CORES_FOLDER))


@dataclass(frozen=True)
class LoadOverrides:
    """Load parameters given for this run (``--n-ctx``, ``--threads``...); None: not given."""

    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    chat_template: str | None = None
    rpc_servers: tuple[str, ...] = ()


def load_params(settings: Settings, model_path: str, *, profile: Profile | None = None,
                overrides: LoadOverrides | None = None) -> LoadParams:
    """How to load ``model_path``: settings, then the profile's own values, then overrides."""
    values: dict[str, Any] = {
        "n_ctx": settings.n_ctx, "n_threads": settings.n_threads,
        "n_gpu_layers": settings.n_gpu_layers, "flash_attn": settings.flash_attention,
    }
    if profile is not None:
        for key in ("n_ctx", "n_threads", "n_gpu_layers"):
            if getattr(profile, key) is not None:
                values[key] = getattr(profile, key)
        values["lora_path"] = profile.lora_path or None
        template = getattr(profile, "chat_template", None)
        if template:
            values["chat_template"] = template
        if profile.rpc:
            values["rpc_servers"] = tuple(profile.rpc)
    if overrides is not None:
        for key in ("n_ctx", "n_threads", "n_gpu_layers", "chat_template"):
            if getattr(overrides, key) is not None:
                values[key] = getattr(overrides, key)
        if overrides.rpc_servers:
            values["rpc_servers"] = overrides.rpc_servers
    return LoadParams(model_path=model_path, **values)


def sampling_params(
    settings: Settings, *, profile: Profile | None = None, persona: Persona | None = None,
    options: ConversationOptions | None = None, overrides: Mapping[str, Any] | None = None,
) -> tuple[SamplingParams, list[str]]:
    """The sampling for a reply, and a line for each preset that had to be ignored (a bad
    value in a profile or persona never stops the reply)."""
    from tui.engine.errors import InvalidParameter
    from tui.models.profiles import ProfileError, apply_sampling
    from tui.prompting.personas import PersonaError

    notes: list[str] = []
    sampling = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_tokens,
                              reasoning_budget=settings.reasoning_budget,
                              prompt_lookup=settings.prompt_lookup)
    if profile is not None:
        try:
            sampling = apply_sampling(profile, sampling)
        except ProfileError as exc:
            notes.append(_("{exc}; the default sampling is used", exc=exc))
        if profile.reasoning_budget is not None:
            sampling = dataclasses.replace(sampling, reasoning_budget=profile.reasoning_budget)
    if persona is not None:
        try:
            sampling = persona.apply_sampling(sampling)
        except PersonaError as exc:
            notes.append(_("the persona's sampling preset was ignored: {exc}", exc=exc))
    if options is not None and options.reasoning_budget is not None:
        sampling = dataclasses.replace(sampling, reasoning_budget=options.reasoning_budget)
    if overrides:
        changes = {k: v for k, v in overrides.items() if v is not None}
        try:
            candidate = dataclasses.replace(sampling, **changes)
            candidate.validate()
        except (InvalidParameter, TypeError) as exc:
            raise InvalidParameter(str(exc)) from None
        sampling = candidate
    return sampling, notes
