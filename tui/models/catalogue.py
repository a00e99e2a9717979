"""The curated catalogue of well-known GGUF models, shipped as JSON so it works offline.

Each entry names a public Hub repository, its files per quantization with their sizes, the
architecture numbers the fit and speed estimates need, the licence, what the model can do
(chat, tools, reasoning, vision, languages) and the date its repository and file names were
checked against the Hub (``verified``; ``null`` where they could not be, with a note).

The packaged file can be updated without a release: a ``catalogue.json`` in the config
folder replaces it when it is valid (``lmdesk models catalogue --check FILE`` says whether a
file is); a bad one is reported in one line and the packaged one is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.models.fit import FitEstimate, ModelShape, Resources, estimate_fit

CATALOGUE_FILE = "catalogue.json"
SCHEMA_VERSION = 2
# share of a file's weights the CPU backend repacks, by quantization (see fit.py)
_REPACK_SHARE = {"Q4_0": 0.85, "Q4_K_M": 0.6, "Q4_K_S": 0.8, "IQ4_NL": 0.85}
# architectures whose layers alternate sliding-window and global attention: every Nth global
_SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CAPABILITIES = ("chat", "tools", "reasoning", "vision")


class CatalogueError(Exception):
    """A catalogue file that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class CatalogueFile:
    quantization: str
    file: str
    size: int
    checked: bool = False
    """The file name was seen on the repository's page (or in its listing) when verified."""


@dataclass(frozen=True)
class Capabilities:
    chat: bool = True
    tools: bool = False
    reasoning: bool = False
    vision: bool = False
    languages: tuple[str, ...] = ("en",)
    """ISO 639-1 codes the model card names (``"multi"`` for "100+ languages")."""

    @property
    def spanish(self) -> bool:
        return "es" in self.languages or "multi" in self.languages

    def labels(self) -> list[str]:
        out = [name for name in _CAPABILITIES if getattr(self, name)]
        if self.spanish:
            out.append("es")
        return out


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    name: str
    repo_id: str
    architecture: str
    params: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    embedding_length: int
    feed_forward_length: int
    vocab_size: int
    context_length: int
    files: tuple[CatalogueFile, ...]
    family: str = ""
    merges: int = 0
    sliding_window: int = 0
    license: str = ""
    experts: int = 0
    experts_used: int = 0
    active_params: int = 0
    """Parameters one token uses (a mixture of experts); 0: all of them."""
    tied_embeddings: bool = False
    """The output layer reuses the token embedding (read in full for every token)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    verified: str | None = None
    """The date the repo id and file names were checked against the Hub (None: not checked)."""
    source: str = ""
    """Where they were checked."""
    notes: str = ""

    @property
    def has_files(self) -> bool:
        """Whether a GGUF build is listed (a few entries name a model that has none)."""
        return bool(self.files)

    def file(self, quantization: str | None = None) -> CatalogueFile:
        """The file for ``quantization`` (case-insensitive); default Q4_K_M or the first.
        ``KeyError`` when it has no such file (or no GGUF file at all)."""
        if not self.files:
            raise KeyError(_("{id} has no GGUF file: {notes}", id=self.id, notes=self.notes))
        if quantization:
            for f in self.files:
                if f.quantization.lower() == quantization.lower():
                    return f
            known = ", ".join(f.quantization for f in self.files)
            raise KeyError(_("{id} has no {quantization} file (has {known})",
                             id=self.id, quantization=quantization, known=known))
        return next((f for f in self.files if f.quantization == "Q4_K_M"), self.files[0])

    def shape(self, quantization: str | None = None) -> ModelShape:
        f = self.file(quantization)
        swa_layers = 0
        if self.sliding_window and self.architecture in _SWA_PATTERN:
            every = _SWA_PATTERN[self.architecture]
            swa_layers = sum(1 for il in range(self.layers) if il % every < every - 1)
        bytes_per_param = f.size / self.params if self.params else 0.0
        embd = int(self.vocab_size * self.embedding_length * bytes_per_param)
        output = 0 if self.tied_embeddings else embd
        layer = max(0, f.size - embd - output) // self.layers if self.layers else 0
        repack = int(layer * self.layers * _REPACK_SHARE.get(f.quantization.upper(), 0.0))
        active = self.active_params or self.params
        routed = active / self.params if self.params else 1.0
        blocks = layer * self.layers
        # per token: the layers (only the routed share of a mixture), the output matrix (the
        # embedding when tied), and one embedding row
        read = int(blocks * routed) + (embd if self.tied_embeddings else output)
        return ModelShape(
            name=self.name,
            architecture=self.architecture,
            n_layers=self.layers,
            n_heads=self.heads,
            n_kv_heads=self.kv_heads,
            key_length=self.head_dim,
            value_length=self.head_dim,
            embedding_length=self.embedding_length,
            feed_forward_length=self.feed_forward_length * max(1, min(self.experts_used or
                                                                      self.experts, 2)),
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            n_params=self.params,
            weights_bytes=f.size,
            repack_bytes=repack,
            n_merges=self.merges,
            sliding_window=self.sliding_window,
            swa_layers=swa_layers,
            layer_bytes=layer,
            read_bytes=read,
            active_params=active,
        )

    def fit(
        self,
        quantization: str | None = None,
        *,
        n_ctx: int | None = None,
        resources: Resources | None = None,
    ) -> FitEstimate:
        return estimate_fit(self.shape(quantization), n_ctx=n_ctx, resources=resources)


# -- reading and checking ------------------------------------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str, "name": str, "repo_id": str, "architecture": str, "params": int, "layers": int,
    "heads": int, "kv_heads": int, "head_dim": int, "embedding_length": int,
    "feed_forward_length": int, "vocab_size": int, "context_length": int, "files": list,
    "license": str, "capabilities": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "family": str, "merges": int, "sliding_window": int, "experts": int, "experts_used": int,
    "active_params": int, "tied_embeddings": bool, "verified": (str, type(None)),
    "source": str, "notes": str,
}


def _type_ok(value: Any, want: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and want is int:
        return False
    return isinstance(value, want)


def validate_catalogue(data: Any) -> list[str]:
    """Every problem with a catalogue document (empty: it is usable)."""
    if not isinstance(data, Mapping):
        return [_("the catalogue is not a JSON object")]
    problems: list[str] = []
    if data.get("version") != SCHEMA_VERSION:
        problems.append(_("version is {get!r}, expected {SCHEMA_VERSION}",
                          get=data.get('version'), SCHEMA_VERSION=SCHEMA_VERSION))
    models = data.get("models")
    if not isinstance(models, list) or not models:
        return [*problems, _("models is missing or empty")]
    seen: set[str] = set()
    for i, m in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(m, Mapping):
            problems.append(_("{where} is not an object", where=where))
            continue
        where = f"models[{i}] ({m.get('id', '?')})"
        for key, want in _REQUIRED.items():
            if key not in m:
                problems.append(_("{where}: {key} is missing", where=where, key=key))
            elif not _type_ok(m[key], want):
                problems.append(_("{where}: {key} has the wrong type", where=where, key=key))
        for key, want in _OPTIONAL.items():
            if key in m and not _type_ok(m[key], want):
                problems.append(_("{where}: {key} has the wrong type", where=where, key=key))
        unknown = set(m) - set(_REQUIRED) - set(_OPTIONAL)
        if unknown:
            problems.append(_("{where}: unknown keys {sorted}",
                              where=where, sorted=sorted(unknown)))
        mid = m.get("id")
        if isinstance(mid, str):
            if mid in seen:
                problems.append(_("{where}: id {mid!r} is used twice", where=where, mid=mid))
            seen.add(mid)
        for key in ("params", "layers", "heads", "kv_heads", "head_dim", "embedding_length",
                    "vocab_size", "context_length"):
            if _type_ok(m.get(key), int) and m[key] <= 0:
                problems.append(_("{where}: {key} must be positive", where=where, key=key))
        repo = m.get("repo_id")
        if isinstance(repo, str) and repo.count("/") != 1:
            problems.append(_("{where}: repo_id {repo!r} is not owner/name",
                              where=where, repo=repo))
        verified = m.get("verified")
        if isinstance(verified, str) and not _DATE.match(verified):
            problems.append(_("{where}: verified {verified!r} is not a YYYY-MM-DD date",
                              where=where, verified=verified))
        if verified is None and not m.get("notes"):
            problems.append(_("{where}: an unverified entry needs a note saying why", where=where))
        caps = m.get("capabilities")
        if isinstance(caps, Mapping):
            for key in _CAPABILITIES:
                if key in caps and not isinstance(caps[key], bool):
                    problems.append(_("{where}: capabilities.{key} must be true or false",
                                      where=where, key=key))
            langs = caps.get("languages")
            if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs):
                problems.append(_("{where}: capabilities.languages must be a list of codes",
                                  where=where))
        files = m.get("files")
        if isinstance(files, list):
            if not files and verified is not None:
                problems.append(_("{where}: files is empty (only an unverified entry, with a "
                                  "note, may list none)", where=where))
            quants: set[str] = set()
            for j, f in enumerate(files):
                if not isinstance(f, Mapping) or not isinstance(f.get("quantization"), str) \
                        or not isinstance(f.get("file"), str) or not _type_ok(f.get("size"), int):
                    problems.append(_("{where}: files[{j}] needs quantization, file and size",
                                      where=where, j=j))
                    continue
                if f["size"] <= 0:
                    problems.append(_("{where}: files[{j}] size must be positive",
                                      where=where, j=j))
                if not f["file"].endswith(".gguf"):
                    problems.append(_("{where}: files[{j}] {file!r} is not a .gguf",
                                      where=where, j=j, file=f['file']))
                if f["quantization"].upper() in quants:
                    problems.append(_("{where}: {quantization} is listed twice",
                                      where=where, quantization=f['quantization']))
                quants.add(f["quantization"].upper())
    return problems


def _entry(data: Mapping[str, Any]) -> CatalogueEntry:
    files = tuple(CatalogueFile(**f) for f in data["files"])
    caps_raw = dict(data.get("capabilities") or {})
    caps = Capabilities(**{**caps_raw, "languages": tuple(caps_raw.get("languages") or ())})
    return CatalogueEntry(**{**data, "files": files, "capabilities": caps})


def parse_catalogue(text: str, origin: str) -> tuple[CatalogueEntry, ...]:
    """Entries from a catalogue document; ``CatalogueError`` naming the first problems."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CatalogueError(_("{origin}: not JSON ({exc})", origin=origin, exc=exc)) from None
    problems = validate_catalogue(data)
    if problems:
        more = _(" (and {value} more)", value=len(problems) - 3) if len(problems) > 3 else ""
        raise CatalogueError(f"{origin}: {'; '.join(problems[:3])}{more}")
    try:
        return tuple(_entry(m) for m in data["models"])
    except TypeError as exc:
        raise CatalogueError(f"{origin}: {exc}") from None


@lru_cache(maxsize=1)
def packaged_catalogue() -> tuple[CatalogueEntry, ...]:
    text = resources.files("tui.models").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return parse_catalogue(text, _("the packaged catalogue"))


@dataclass(frozen=True)
class LoadedCatalogue:
    entries: tuple[CatalogueEntry, ...]
    source: str
    """"packaged" or the user file's path."""
    problem: str | None = None
    """Why the user's file was not used."""


def user_catalogue_path(config_dir: Path | None = None) -> Path:
    if config_dir is None:
        from tui.config import resolve_paths

        config_dir = resolve_paths().config_dir
    return config_dir / CATALOGUE_FILE


_USER_CACHE: dict[str, tuple[tuple[int, int], LoadedCatalogue]] = {}


def read_catalogue(config_dir: Path | None = None) -> LoadedCatalogue:
    """The user's ``catalogue.json`` from the config folder when present and valid, else the
    packaged one (with the reason the user's was not used)."""
    path = user_catalogue_path(config_dir)
    try:
        st = path.stat()
    except OSError:
        return LoadedCatalogue(packaged_catalogue(), "packaged")
    key = str(path)
    stamp = (st.st_size, st.st_mtime_ns)
    cached = _USER_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        entries = parse_catalogue(path.read_text(encoding="utf-8"), str(path))
        loaded = LoadedCatalogue(entries, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        loaded = LoadedCatalogue(packaged_catalogue(), "packaged",
                                 _("{path}: cannot read ({exc}); using the packaged catalogue",
                                   path=path, exc=exc))
    except CatalogueError as exc:
        loaded = LoadedCatalogue(packaged_catalogue(), "packaged",
                                 _("{exc}; using the packaged catalogue", exc=exc))
    _USER_CACHE[key] = (stamp, loaded)
    return loaded


def load_catalogue(config_dir: Path | None = None) -> tuple[CatalogueEntry, ...]:
    """The catalogue in use (the user's copy when valid, else the packaged one)."""
    return read_catalogue(config_dir).entries


def find_entry(query: str, config_dir: Path | None = None) -> CatalogueEntry | None:
    """By id, repo id or a unique prefix of either (case-insensitive)."""
    q = query.lower()
    entries = load_catalogue(config_dir)
    for e in entries:
        if q in (e.id.lower(), e.repo_id.lower()):
            return e
    hits = [e for e in entries if e.id.lower().startswith(q) or e.repo_id.lower().startswith(q)]
    return hits[0] if len(hits) == 1 else None
