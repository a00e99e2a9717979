"""Models other apps already downloaded, found where those apps keep them and used in place.

Nothing here copies, moves or writes: a model is listed by the path of its file inside the
other app's folder (for Ollama, the blob its manifest names), and loaded from there.

- Ollama: ``$OLLAMA_MODELS`` or ``~/.ollama/models``; ``manifests/<host>/<namespace>/<model>/
  <tag>`` is JSON whose ``application/vnd.ollama.image.model`` layer names the GGUF blob in
  ``blobs/sha256-<hex>``; its template and parameters layers are read and noted.
- LM Studio: ``~/.lmstudio/models`` (or where ``~/.lmstudio-home-pointer`` says), and the
  older ``~/.cache/lm-studio/models``: ``<publisher>/<repo>/<file>.gguf``.
- text-generation-webui: ``~/text-generation-webui/models`` and ``.../user_data/models``.
- GPT4All: its data folder (``~/.local/share/nomic.ai/GPT4All`` on Linux).
- Jan: ``~/jan/models`` (older) and its data folder (``~/.local/share/Jan/data`` on Linux).

A damaged manifest, or one naming a blob that is missing, becomes one row with an error; the
rest still list.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.models.registry import ModelRef

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_TEMPLATE_LAYER = "application/vnd.ollama.image.template"
OLLAMA_PARAMS_LAYER = "application/vnd.ollama.image.params"
OLLAMA_SYSTEM_LAYER = "application/vnd.ollama.image.system"
OLLAMA_REGISTRY = "registry.ollama.ai"
MAX_TEXT_LAYER = 256 * 1024
"""Template, system and parameters layers larger than this are not read (they are text)."""

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class AppFolder:
    """One place one app keeps models."""

    source: str
    """"ollama", "lmstudio", "textgen-webui", "gpt4all" or "jan"."""
    path: Path


def _data_home(home: Path, env: Mapping[str, str]) -> Path:
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    if sys.platform == "win32":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")


def ollama_root(home: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    e = os.environ if env is None else env
    if e.get("OLLAMA_MODELS"):
        return Path(e["OLLAMA_MODELS"]).expanduser()
    return (home or Path.home()) / ".ollama" / "models"


def _lmstudio_roots(home: Path) -> list[Path]:
    roots: list[Path] = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        pointer = (home / ".lmstudio-home-pointer").read_text(encoding="utf-8").strip()
        if pointer:
            roots.append(Path(pointer).expanduser() / "models")
    roots += [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    return roots


def app_folders(home: Path | None = None, env: Mapping[str, str] | None = None) -> list[AppFolder]:
    """Where the other apps keep GGUF files on this machine (Ollama aside: see
    ``ollama_models``). Folders that do not exist are left out."""
    h = home or Path.home()
    e = os.environ if env is None else env
    data = _data_home(h, e)
    candidates = [AppFolder("lmstudio", p) for p in _lmstudio_roots(h)]
    candidates += [
        AppFolder("textgen-webui", h / "text-generation-webui" / "models"),
        AppFolder("textgen-webui", h / "text-generation-webui" / "user_data" / "models"),
        AppFolder("gpt4all", data / "nomic.ai" / "GPT4All"),
        AppFolder("jan", h / "jan" / "models"),
        AppFolder("jan", data / "Jan" / "data"),
    ]
    seen: set[str] = set()
    out: list[AppFolder] = []
    for folder in candidates:
        with contextlib.suppress(OSError):
            if folder.path.is_dir():
                key = str(folder.path.resolve())
                if key not in seen:
                    seen.add(key)
                    out.append(folder)
    return out


def is_model_file(path: Path) -> bool:
    """A GGUF that is a model: not a vision projector, not a later shard of a split file."""
    name = path.name.lower()
    if not name.endswith(".gguf") or name.startswith("mmproj"):
        return False
    split = _SPLIT.search(path.name)
    return split is None or split.group(1) == "00001"


def gguf_files(folder: Path) -> list[Path]:
    """Model GGUF files under ``folder``, sorted, unreadable subfolders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda _e: None):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_model_file(path):
                found.append(path)
    return found


def _lmstudio_name(path: Path, root: Path) -> tuple[str, str | None]:
    """"publisher/repo/file" gives the file's stem and the repo id."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return path.stem, None
    repo = f"{parts[0]}/{parts[1]}" if len(parts) >= 3 else None
    return path.stem, repo


def folder_app_models(folders: Iterable[AppFolder]) -> list[ModelRef]:
    refs: list[ModelRef] = []
    for folder in folders:
        for path in gguf_files(folder.path):
            repo = None
            name = path.stem
            if folder.source == "lmstudio":
                name, repo = _lmstudio_name(path, folder.path)
            refs.append(ModelRef(name, path, folder.source, repo_id=repo,
                                 origin=str(folder.path)))
    return refs


# -- Ollama ---------------------------------------------------------------------------------------


def ollama_tag_name(manifest: Path, manifests_root: Path) -> str:
    """What ``ollama list`` calls it: "llama3.2:3b"; another namespace "ns/model:tag"; another
    registry "host/ns/model:tag"."""
    try:
        parts = manifest.relative_to(manifests_root).parts
    except ValueError:
        return manifest.name
    if len(parts) < 4:
        return ":".join(parts[-2:]) if len(parts) >= 2 else manifest.name
    host, namespace, *model, tag = parts
    base = "/".join(model)
    if host == OLLAMA_REGISTRY:
        return f"{base}:{tag}" if namespace == "library" else f"{namespace}/{base}:{tag}"
    return f"{host}/{namespace}/{base}:{tag}"


def blob_path(root: Path, digest: str) -> Path:
    """The blob file of ``sha256:<hex>`` (Ollama names it ``sha256-<hex>``; older versions
    kept the colon)."""
    dashed = root / "blobs" / digest.replace(":", "-")
    if dashed.exists():
        return dashed
    colon = root / "blobs" / digest
    return colon if colon.exists() else dashed


def _read_text_layer(root: Path, layer: Mapping[str, Any]) -> str | None:
    digest = layer.get("digest")
    if not isinstance(digest, str):
        return None
    path = blob_path(root, digest)
    try:
        if path.stat().st_size > MAX_TEXT_LAYER:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@dataclass(frozen=True)
class OllamaEntry:
    name: str
    manifest: Path
    blob: Path | None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    error: str | None = None


def read_manifest(path: Path, root: Path) -> OllamaEntry:
    """One manifest: its model blob, template and parameters; an error, never an exception."""
    name = ollama_tag_name(path, root / "manifests")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return OllamaEntry(name, path, None, error=_("damaged Ollama manifest {path}: {exc}",
                                                     path=path, exc=exc))
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        return OllamaEntry(name, path, None, error=_("damaged Ollama manifest {path}: no layers",
                                                     path=path))
    by_type: dict[str, dict[str, Any]] = {}
    for layer in layers:
        if isinstance(layer, dict) and isinstance(layer.get("mediaType"), str):
            by_type.setdefault(layer["mediaType"], layer)
    model = by_type.get(OLLAMA_MODEL_LAYER)
    if model is None or not isinstance(model.get("digest"), str):
        return OllamaEntry(name, path, None,
                           error=_("Ollama manifest {path} names no model layer", path=path))
    blob = blob_path(root, model["digest"])
    template = _read_text_layer(root, by_type.get(OLLAMA_TEMPLATE_LAYER, {}))
    system = _read_text_layer(root, by_type.get(OLLAMA_SYSTEM_LAYER, {}))
    params: dict[str, Any] | None = None
    raw = _read_text_layer(root, by_type.get(OLLAMA_PARAMS_LAYER, {}))
    if raw:
        with contextlib.suppress(ValueError):
            got = json.loads(raw)
            params = got if isinstance(got, dict) else None
    if not blob.is_file():
        return OllamaEntry(name, path, blob, template, system, params,
                           error=_("Ollama model {name}: its blob {name2} is missing from "
                                   "{parent} (run `ollama pull {name}` again)",
                                   name=name, name2=blob.name, parent=blob.parent))
    return OllamaEntry(name, path, blob, template, system, params)


def ollama_entries(root: Path | None = None) -> list[OllamaEntry]:
    """Every tag in an Ollama store, sorted by name."""
    base = root if root is not None else ollama_root()
    manifests = base / "manifests"
    if not manifests.is_dir():
        return []
    out: list[OllamaEntry] = []
    for dirpath, dirnames, filenames in os.walk(manifests, onerror=lambda _e: None):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(read_manifest(Path(dirpath) / name, base))
    return sorted(out, key=lambda e: e.name)


def ollama_models(root: Path | None = None) -> list[ModelRef]:
    base = root if root is not None else ollama_root()
    refs: list[ModelRef] = []
    for e in ollama_entries(base):
        path = e.blob if e.blob is not None else e.manifest
        params = json.dumps(e.parameters, sort_keys=True) if e.parameters else None
        refs.append(ModelRef(e.name, path, "ollama", origin=str(base), template=e.template,
                             parameters=params, error=e.error))
    return refs


def other_app_models(home: Path | None = None, env: Mapping[str, str] | None = None
                     ) -> list[ModelRef]:
    """Ollama's tags, then the GGUF files of LM Studio, text-generation-webui, GPT4All, Jan."""
    return ollama_models(ollama_root(home, env)) + folder_app_models(app_folders(home, env))
