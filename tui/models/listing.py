"""The local model list: packaged models, the Hugging Face cache, other apps' stores (Ollama,
LM Studio, text-generation-webui, GPT4All, Jan: used in place, see ``tui.models.stores``) and
the user's folders.

Each entry is described from its GGUF header, never by loading the model. Headers are cached
in a JSON file keyed by (path, size, mtime), so a second listing reads no model file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tui.engine.gguf import GGUFError, read_header
from tui.i18n import _
from tui.models.fit import ModelShape
from tui.models.registry import ModelRef, folder_models, packaged_models

CACHE_FILE = "gguf-headers.json"
CACHE_VERSION = 2

# architectures llama.cpp runs (general.architecture values); anything else gets a note
KNOWN_ARCHITECTURES = frozenset({
    "llama", "llama4", "deci", "falcon", "falcon-h1", "grok", "gpt2", "gptj", "gptneox", "mpt",
    "baichuan", "starcoder", "starcoder2", "refact", "bert", "nomic-bert", "jina-bert-v2",
    "bloom", "stablelm", "qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "phi2",
    "phi3", "phimoe", "plamo", "plamo2", "codeshell", "orion", "internlm2", "minicpm",
    "minicpm3", "gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding", "mamba", "mamba2",
    "jamba", "xverse", "command-r", "cohere2", "dbrx", "olmo", "olmo2", "olmoe", "openelm",
    "arctic", "deepseek", "deepseek2", "chatglm", "glm4", "glm4moe", "bitnet", "t5", "t5encoder",
    "jais", "nemotron", "nemotron-h", "exaone", "exaone4", "rwkv6", "rwkv6qwen2", "rwkv7",
    "arwkv7", "granite", "granitemoe", "granitehybrid", "chameleon", "wavtokenizer-dec", "plm",
    "bailingmoe", "dots1", "arcee", "ernie4_5", "ernie4_5-moe", "hunyuan-moe", "hunyuan-dense",
    "smollm3", "gpt-oss", "lfm2", "lfm2moe", "dream", "smallthinker", "llada", "llada-moe",
    "seed_oss", "grovemoe", "apertus", "minimax-m2", "cogvlm", "rnd1", "pangu-embedded",
    "mistral3", "qwen3next", "afmoe", "kimi-linear",
})


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: str
    source: str
    """"packaged", "hf-cache", "folder", "path", or the app it came from ("ollama",
    "lmstudio", "textgen-webui", "gpt4all", "jan")."""
    size_bytes: int
    architecture: str | None = None
    n_params: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    n_layers: int | None = None
    has_chat_template: bool = False
    repo_id: str | None = None
    error: str | None = None
    """Why the header could not be read (the model is listed as unreadable)."""
    note: str | None = None
    shape: ModelShape | None = None
    """What the fit estimate needs, so the switcher can size every model without reading files."""
    origin: str | None = None
    """The folder (or store) it was found in."""
    app_template: str | None = None
    """The other app's chat template for it (Ollama's Go template): noted, not used."""
    app_parameters: str | None = None
    """The other app's default parameters for it, as JSON text."""

    @property
    def readable(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.app_parameters:
            with contextlib.suppress(ValueError):
                data["app_parameters"] = json.loads(self.app_parameters)
        return data


def _entry_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Header-derived fields of a cache entry (the rest comes from where the file was found)."""
    shape = data.get("shape")
    out = {k: data.get(k) for k in _HEADER_FIELDS}
    out["shape"] = ModelShape(**shape) if isinstance(shape, dict) else None
    return out


_HEADER_FIELDS = (
    "architecture", "n_params", "quantization", "context_length", "n_layers",
    "has_chat_template", "error", "note",
)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one header into the fields a listing shows. Never raises for a bad file."""
    try:
        header = read_header(path)
    except GGUFError as exc:
        return {"error": str(exc)}
    arch = header.architecture
    note = None
    if arch not in KNOWN_ARCHITECTURES:
        note = _("unknown architecture {arch!r}: llama.cpp may not run it", arch=arch)
    try:
        shape: ModelShape | None = ModelShape.from_header(header)
    except (ValueError, ZeroDivisionError, TypeError):
        shape = None
    return {
        "architecture": arch,
        "n_params": header.n_params,
        "quantization": header.quantization,
        "context_length": header.context_length,
        "n_layers": header.n_layers,
        "has_chat_template": header.chat_template is not None,
        "error": None,
        "note": note,
        "shape": shape,
    }


class HeaderCache:
    """A JSON file of header descriptions keyed by path, valid while (size, mtime) match."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
                    entries = data.get("entries")
                    if isinstance(entries, dict):
                        self._entries = entries

    def get(self, path: str, size: int, mtime_ns: int) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get(path)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime_ns:
            try:
                return _entry_from_json(entry)
            except TypeError:
                pass  # an entry from another version of ModelShape: read the file again
        info = describe(path)
        self.put(path, size, mtime_ns, info)
        return info

    def is_fresh(self, path: str, size: int, mtime_ns: int) -> bool:
        with self._lock:
            entry = self._entries.get(path)
        return entry is not None and (entry.get("size"), entry.get("mtime_ns")) == (size, mtime_ns)

    def put(self, path: str, size: int, mtime_ns: int, info: dict[str, Any]) -> None:
        stored = {k: info.get(k) for k in _HEADER_FIELDS}
        shape = info.get("shape")
        stored["shape"] = asdict(shape) if isinstance(shape, ModelShape) else None
        with self._lock:
            self._entries[path] = {"size": size, "mtime_ns": mtime_ns, **stored}
            self._dirty = True

    def prune(self) -> None:
        """Forget files that are gone."""
        with self._lock:
            for key in list(self._entries):
                if not os.path.exists(key):
                    del self._entries[key]
                    self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with self._lock:
            payload = json.dumps({"version": CACHE_VERSION, "entries": self._entries})
            self._dirty = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".headers-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs speed next time


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment now (not when huggingface_hub loaded)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hf_cache_models(cache_dir: str | os.PathLike[str] | None = None) -> list[ModelRef]:
    """GGUF files in the Hugging Face cache. A missing or unreadable cache lists nothing."""
    folder = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    if not folder.is_dir():
        return []
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(folder)
    except Exception:  # CacheNotFound, a corrupt cache, huggingface_hub missing
        return []
    refs: list[ModelRef] = []
    for repo in sorted(info.repos, key=lambda r: str(r.repo_id)):
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            for f in sorted(rev.files, key=lambda f: str(f.file_name)):
                if str(f.file_name).lower().endswith(".gguf"):
                    path = Path(f.file_path)
                    refs.append(ModelRef(path.stem, path, "hf-cache", repo_id=str(repo.repo_id),
                                         origin=str(folder)))
    return refs


def default_cache_path(cache_dir: Path | None = None) -> Path:
    if cache_dir is None:
        from tui.config import resolve_paths

        cache_dir = resolve_paths().cache_dir
    return cache_dir / CACHE_FILE


def list_models(
    folders: Sequence[str | os.PathLike[str]] = (),
    *,
    cache_path: Path | None = None,
    cache_dir: Path | None = None,
    packaged: bool = True,
    hf_cache: bool | str | os.PathLike[str] = True,
    other_apps: bool = True,
    home: Path | None = None,
) -> list[LocalModel]:
    """Every local model, described from its header (through the cache).

    ``cache_path``: the header cache file; default ``cache_dir/gguf-headers.json`` where
    ``cache_dir`` defaults to ``tui.config``'s cache folder. ``hf_cache``: True for the
    Hugging Face cache found from the environment, a folder, or False. ``other_apps``: also
    the models of Ollama, LM Studio, text-generation-webui, GPT4All and Jan, found under
    ``home`` (default: the user's home; ``OLLAMA_MODELS`` is honoured).
    """
    from tui.models.stores import other_app_models

    refs: list[ModelRef] = []
    if packaged:
        refs += packaged_models()
    if hf_cache:
        refs += hf_cache_models(None if hf_cache is True else hf_cache)
    if other_apps:
        refs += other_app_models(home)
    refs += folder_models([Path(f) for f in folders])
    cache = HeaderCache(cache_path if cache_path is not None else default_cache_path(cache_dir))
    _read_missing_in_parallel(refs, cache)
    models: list[LocalModel] = []
    seen: set[str] = set()
    names: dict[str, int] = {}
    for ref in refs:
        key = _identity(ref.path)
        if key in seen:
            continue
        seen.add(key)
        if ref.error:
            models.append(_local(ref, ref.name, 0, {"error": ref.error}))
            continue
        try:
            st = ref.path.stat()
        except OSError as exc:
            models.append(_local(ref, ref.name, 0,
                                 {"error": _("{path}: cannot read ({strerror})",
                                             path=ref.path, strerror=exc.strerror)}))
            continue
        info = cache.get(str(ref.path), st.st_size, st.st_mtime_ns)
        name = ref.name
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}-{names[name]}"
        models.append(_local(ref, name, st.st_size, info))
    cache.prune()
    cache.save()
    return models


def _local(ref: ModelRef, name: str, size: int, info: dict[str, Any]) -> LocalModel:
    return LocalModel(
        name=name, path=str(ref.path), source=ref.source, size_bytes=size,
        repo_id=ref.repo_id, origin=ref.origin, app_template=ref.template,
        app_parameters=ref.parameters,
        architecture=info.get("architecture"), n_params=info.get("n_params"),
        quantization=info.get("quantization"), context_length=info.get("context_length"),
        n_layers=info.get("n_layers"), has_chat_template=bool(info.get("has_chat_template")),
        error=info.get("error"), note=info.get("note"), shape=info.get("shape"),
    )


PARALLEL_FROM = 8
"""Uncached headers from which reading them in several processes pays for starting those."""


def _read_missing_in_parallel(refs: Sequence[ModelRef], cache: HeaderCache) -> None:
    """A cold listing of many models: read the uncached headers on all cores.

    Skipping a vocabulary of 100k strings is a Python loop (25-60 ms a file), so a first
    listing of 50 models would take seconds on one core.
    """
    cores = os.cpu_count() or 1
    missing: list[tuple[str, int, int]] = []
    for ref in refs:
        if ref.error:
            continue
        with contextlib.suppress(OSError):
            st = ref.path.stat()
            if not cache.is_fresh(str(ref.path), st.st_size, st.st_mtime_ns):
                missing.append((str(ref.path), st.st_size, st.st_mtime_ns))
    if cores < 2 or len(missing) < PARALLEL_FROM:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tui.spawn import stdio_with_file_descriptors

    workers = min(cores, 8, len(missing) // 4 or 1)
    try:
        with stdio_with_file_descriptors(), ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            infos = list(pool.map(describe, [m[0] for m in missing], chunksize=4))
    except (OSError, RuntimeError):
        return  # no processes here: the listing reads them one by one instead
    for (path, size, mtime_ns), info in zip(missing, infos, strict=True):
        cache.put(path, size, mtime_ns, info)


def _identity(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def find_model(models: Sequence[LocalModel], name: str) -> LocalModel | None:
    """By exact name, then a unique prefix, then path."""
    wanted = name.lower()
    exact = [m for m in models if m.name.lower() == wanted]
    if exact:
        return exact[0]
    prefix = [m for m in models if m.name.lower().startswith(wanted)]
    if len(prefix) == 1:
        return prefix[0]
    by_path = [m for m in models if m.path == name or _identity(Path(m.path)) == name]
    return by_path[0] if by_path else None
