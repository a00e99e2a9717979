"""Model profiles: a nickname plus saved load and sampling parameters and notes per model.

A profile is chosen per conversation (its options' ``ProfileModel``); the model then
loads with the profile's ``LoadParams`` (its own context size, GPU layers, threads, an
optional LoRA adapter GGUF and the ``lmdesk rpc-worker``s that take its layers) and its
sampling preset applies to the replies. Usage per profile (replies, mean generation tok/s,
mean time to first token) is recorded after each reply.

Profiles live in the store's "profiles" table beside the per-model usage rows the app keeps
(``tui.app.model_manager.record_usage``): profile rows carry ``"kind": "profile"`` and no
``"name"`` field, so the two never mix. No Textual here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinydb import Query

from tui.engine.errors import InvalidParameter
from tui.engine.protocol import GenerationStats, LoadParams, SamplingParams
from tui.i18n import _
from tui.store.options import ConversationOptions, ProfileModel

if TYPE_CHECKING:
    from tui.store import Store

TABLE = "profiles"
KIND = "profile"
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
_INT_SAMPLING = frozenset({"top_k", "max_tokens"})
MAX_NICKNAME = 64


class ProfileError(ValueError):
    """A bad profile (the message says what to fix)."""


class ProfileNotFound(ProfileError, LookupError):
    pass


@dataclass(frozen=True)
class Usage:
    replies: int = 0
    mean_tps: float = 0.0
    mean_ttft: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"replies": self.replies, "mean_tps": self.mean_tps, "mean_ttft": self.mean_ttft}

    @classmethod
    def from_dict(cls, data: object) -> Usage:
        if not isinstance(data, Mapping):
            return cls()
        try:
            return cls(int(data.get("replies", 0)), float(data.get("mean_tps", 0.0)),
                       float(data.get("mean_ttft", 0.0)))
        except (TypeError, ValueError):
            return cls()


@dataclass(frozen=True)
class Profile:
    id: str
    nickname: str
    model_path: str
    model_name: str = ""
    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    lora_path: str | None = None
    chat_template: str | None = None
    """A Jinja chat-template file used instead of the model's own (fixes a wrong template)."""
    reasoning_budget: int | None = None
    """Thinking tokens for reasoning models: None the default, -1 unlimited, 0 off."""
    rpc: tuple[str, ...] = ()
    """``lmdesk rpc-worker`` addresses ("host:port") that take layers of the model."""
    sampling: Mapping[str, float | int] = field(default_factory=dict)
    notes: str = ""
    usage: Usage = field(default_factory=Usage)
    created: float = 0.0
    updated: float = 0.0

    @property
    def label(self) -> str:
        """"smollm2-135m (terse-coder)"."""
        model = self.model_name or Path(self.model_path).stem
        return f"{model} ({self.nickname})"

    def engine_key(self) -> str:
        """The model manager's key for this profile's engine: one engine per distinct
        (path, n_ctx, lora_path, n_gpu_layers)."""
        return engine_key(load_params(self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND, "id": self.id, "nickname": self.nickname,
            "model_path": self.model_path, "model_name": self.model_name,
            "n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers, "n_threads": self.n_threads,
            "lora_path": self.lora_path, "chat_template": self.chat_template,
            "reasoning_budget": self.reasoning_budget, "rpc": list(self.rpc),
            "sampling": dict(self.sampling), "notes": self.notes,
            "usage": self.usage.to_dict(), "created": self.created, "updated": self.updated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        def opt_int(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        try:
            return cls(
                id=str(data["id"]), nickname=str(data.get("nickname", data["id"])),
                model_path=str(data.get("model_path", "")),
                model_name=str(data.get("model_name") or ""),
                n_ctx=opt_int("n_ctx"), n_gpu_layers=opt_int("n_gpu_layers"),
                n_threads=opt_int("n_threads"),
                lora_path=(str(data["lora_path"]) if data.get("lora_path") else None),
                chat_template=(str(data["chat_template"]) if data.get("chat_template")
                               else None),
                reasoning_budget=opt_int("reasoning_budget"),
                rpc=tuple(str(a) for a in data.get("rpc") or ()),
                sampling=dict(data.get("sampling") or {}), notes=str(data.get("notes") or ""),
                usage=Usage.from_dict(data.get("usage")),
                created=float(data.get("created", 0.0)), updated=float(data.get("updated", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(_("a profile record is malformed ({exc!r})", exc=exc)) from None


def engine_key(params: LoadParams) -> str:
    """A string naming an engine loaded with ``params``: the path alone for a plain load."""
    if (params.n_ctx is None and params.lora_path is None and params.n_gpu_layers is None
            and params.chat_template is None and not params.rpc_servers):
        return params.model_path
    key = (f"{params.model_path}#n_ctx={params.n_ctx}&gpu={params.n_gpu_layers}"
           f"&lora={params.lora_path or ''}")
    if params.chat_template is not None:
        key += "&template=" + hashlib.sha256(params.chat_template.encode()).hexdigest()[:12]
    if params.rpc_servers:
        key += "&rpc=" + ",".join(params.rpc_servers)
    return key


def load_params(profile: Profile) -> LoadParams:
    """The profile's load parameters (validated; no file checks: see ``check_files``)."""
    params = LoadParams(model_path=profile.model_path, n_ctx=profile.n_ctx,
                        n_threads=profile.n_threads, n_gpu_layers=profile.n_gpu_layers,
                        lora_path=profile.lora_path or None, rpc_servers=tuple(profile.rpc))
    try:
        params.validate()
    except InvalidParameter as exc:
        raise ProfileError(_("profile {nickname!r}: {exc}",
                             nickname=profile.nickname, exc=exc)) from None
    return params


def check_files(profile: Profile) -> None:
    """A clear ``ProfileError`` when the model or the LoRA adapter file is missing."""
    if not Path(profile.model_path).is_file():
        raise ProfileError(_("profile {nickname!r}: the model file {model_path} does not exist",
                             nickname=profile.nickname, model_path=profile.model_path))
    if profile.lora_path and not Path(profile.lora_path).is_file():
        raise ProfileError(_("profile {nickname!r}: the LoRA adapter {lora_path} does not exist "
                             "(give the path of a LoRA GGUF file, or leave it empty)",
                             nickname=profile.nickname, lora_path=profile.lora_path))
    if profile.chat_template and not Path(profile.chat_template).is_file():
        raise ProfileError(_("profile {nickname!r}: the chat template file {chat_template} does "
                             "not exist",
                             nickname=profile.nickname, chat_template=profile.chat_template))


def _coerce_sampling(sampling: Mapping[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in sampling.items():
        if key not in SAMPLING_KEYS:
            raise ProfileError(_("unknown sampling setting {key!r} (known: {join})",
                                 key=key, join=', '.join(SAMPLING_KEYS)))
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise ProfileError(_("{key} must be a number, got {value!r}", key=key, value=value))
        try:
            out[key] = int(value) if key in _INT_SAMPLING else float(value)
        except (TypeError, ValueError):
            raise ProfileError(_("{key} must be a number, got {value!r}",
                                 key=key, value=value)) from None
        if key in _INT_SAMPLING and isinstance(value, float) and value != int(value):
            raise ProfileError(_("{key} must be a whole number, got {value!r}",
                                 key=key, value=value))
    return out


def apply_sampling(profile: Profile, base: SamplingParams) -> SamplingParams:
    """``base`` with the profile's sampling values; a bad value is a ``ProfileError``."""
    values = _coerce_sampling(profile.sampling)
    params = replace(base, **values)  # type: ignore[arg-type]
    try:
        params.validate()
    except InvalidParameter as exc:
        raise ProfileError(_("profile {nickname!r}: bad sampling: {exc}",
                             nickname=profile.nickname, exc=exc)) from None
    return params


def validate(profile: Profile) -> Profile:
    """The profile with its sampling coerced; ``ProfileError`` says what is wrong."""
    nickname = profile.nickname.strip()
    if not nickname:
        raise ProfileError(_("a profile needs a nickname"))
    if len(nickname) > MAX_NICKNAME:
        raise ProfileError(_("the nickname is too long (at most {MAX_NICKNAME} characters)",
                             MAX_NICKNAME=MAX_NICKNAME))
    if not profile.model_path.strip():
        raise ProfileError(_("profile {nickname!r} needs a model (a GGUF path)",
                             nickname=nickname))
    from tui.rpc.probe import parse_workers

    try:
        rpc = parse_workers(profile.rpc)
    except ValueError as exc:
        raise ProfileError(_("profile {nickname!r}: RPC workers: {exc}",
                             nickname=nickname, exc=exc)) from None
    fixed = replace(profile, nickname=nickname, sampling=_coerce_sampling(profile.sampling),
                    lora_path=profile.lora_path.strip() if profile.lora_path else None,
                    rpc=rpc)
    load_params(fixed)
    apply_sampling(fixed, SamplingParams())
    return fixed


class ProfileLibrary:
    """Profiles in the store's "profiles" table (rows with ``kind == "profile"``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _table(self) -> Any:
        return self.store.table(TABLE)

    def list(self) -> list[Profile]:
        rows = self._table().search(Query().kind == KIND)
        out = []
        for row in rows:
            try:
                out.append(Profile.from_dict(row))
            except ProfileError:
                continue  # one broken record must not hide the others
        return sorted(out, key=lambda p: p.nickname.lower())

    def get(self, ref: str) -> Profile:
        """By id, else by nickname (case-insensitive)."""
        profiles = self.list()
        found = next((p for p in profiles if p.id == ref), None) or next(
            (p for p in profiles if p.nickname.lower() == ref.strip().lower()), None)
        if found is None:
            raise ProfileNotFound(_("no profile {ref!r}", ref=ref))
        return found

    def find(self, ref: object) -> Profile | None:
        if not isinstance(ref, str) or not ref:
            return None
        try:
            return self.get(ref)
        except ProfileNotFound:
            return None

    def _check_unique(self, profile: Profile) -> None:
        clash = next((p for p in self.list() if p.id != profile.id
                      and p.nickname.lower() == profile.nickname.lower()), None)
        if clash is not None:
            raise ProfileError(_("there is already a profile called {nickname!r}",
                                 nickname=profile.nickname))

    def create(self, nickname: str, model_path: str, *, model_name: str = "",
               n_ctx: int | None = None, n_gpu_layers: int | None = None,
               n_threads: int | None = None, lora_path: str | None = None,
               sampling: Mapping[str, Any] | None = None, notes: str = "",
               rpc: tuple[str, ...] = ()) -> Profile:
        from tui.store.models import new_id

        now = time.time()
        profile = validate(Profile(
            id=new_id("prof-"), nickname=nickname, model_path=model_path,
            model_name=model_name or Path(model_path).stem, n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers, n_threads=n_threads, lora_path=lora_path, rpc=tuple(rpc),
            sampling=dict(sampling or {}), notes=notes, created=now, updated=now,
        ))
        self._check_unique(profile)
        self._table().insert(profile.to_dict())
        return profile

    def update(self, ref: str, **changes: Any) -> Profile:
        """Change fields (not ``id``, ``usage`` or ``created``)."""
        old = self.get(ref)
        bad = sorted(set(changes) - {f.name for f in dataclasses.fields(Profile)}
                     | (set(changes) & {"id", "usage", "created"}))
        if bad:
            raise ProfileError(_("cannot change {value!r}", value=bad[0]))
        new = validate(replace(old, **changes, updated=time.time()))
        self._check_unique(new)
        q = Query()
        self._table().update(new.to_dict(), (q.kind == KIND) & (q.id == old.id))
        return new

    def save(self, profile: Profile) -> Profile:
        """Create (an empty id) or update from a whole profile (the app's form)."""
        fields: dict[str, Any] = {"nickname": profile.nickname, "model_path": profile.model_path,
                  "model_name": profile.model_name, "n_ctx": profile.n_ctx,
                  "n_gpu_layers": profile.n_gpu_layers, "n_threads": profile.n_threads,
                  "lora_path": profile.lora_path, "sampling": dict(profile.sampling),
                  "notes": profile.notes, "rpc": tuple(profile.rpc)}
        if not profile.id:
            return self.create(**fields)
        return self.update(profile.id, **fields)

    def delete(self, ref: str) -> Profile:
        profile = self.get(ref)
        q = Query()
        self._table().remove((q.kind == KIND) & (q.id == profile.id))
        return profile

    def record_usage(self, profile_id: str, stats: GenerationStats) -> Usage:
        """Count one more reply: replies, running means of generation tok/s and ttft."""
        profile = self.get(profile_id)
        u = profile.usage
        n = u.replies
        usage = Usage(
            replies=n + 1,
            mean_tps=(u.mean_tps * n + stats.generation_tokens_per_s) / (n + 1),
            mean_ttft=(u.mean_ttft * n + stats.time_to_first_token_s) / (n + 1),
        )
        q = Query()
        self._table().update({"usage": usage.to_dict()},
                             (q.kind == KIND) & (q.id == profile.id))
        return usage

    def for_conversation(self, options: ConversationOptions) -> Profile | None:
        """The profile a conversation runs on (None when none or gone)."""
        model = options.model
        return self.find(model.profile_id) if isinstance(model, ProfileModel) else None


def stored_profiles(data_dir: Path) -> list[Profile]:
    """The profiles in a data folder, read-only (another lmdesk may hold it); [] when none."""
    from tui.store import Store, StoreError
    from tui.store.store import INDEX_NAME

    if not (Path(data_dir) / INDEX_NAME).is_file():
        return []
    try:
        with Store.open(Path(data_dir), read_only=True) as store:
            return ProfileLibrary(store).list()
    except (StoreError, OSError):
        return []
