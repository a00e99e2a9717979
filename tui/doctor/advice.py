"""What this machine can run: the largest model per quantization that fits in RAM and in VRAM
with a usable context, and which well-known models fit, in plain words.

The estimate is weights (parameters x bytes per parameter) + KV cache (f16, per token, from a
typical architecture of that size) + a fixed overhead for compute buffers. ``tui.models.fit``
and ``tui.models.catalogue`` (written alongside) are used when they offer what is needed;
otherwise the small tables below stand in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
MIB = 1024**2

QUANTS: dict[str, float] = {"Q4_K_M": 0.6, "Q5_K_M": 0.7, "Q8_0": 1.06, "F16": 2.0}
"""Bytes per parameter, roughly, with the embedding and output layers included."""

USABLE_CTX = 4096
COMFORT_CTX = 8192
SHORT_CTX = 1024
COMFORT_SHARE = 0.8
"""Comfortable: the model with COMFORT_CTX of context takes at most this share of the budget."""
OVERHEAD_BYTES = 512 * MIB
"""Compute buffers, the runtime, and the scratch llama.cpp allocates beside the weights."""
RAM_HEADROOM = 1 * GIB
"""Left for the OS, lmdesk itself and what else is running."""
VRAM_HEADROOM = 512 * MIB
"""The CUDA/Metal context and the display."""


@dataclass(frozen=True)
class SizeClass:
    """A common model size and the architecture typical of it (for the KV cache)."""

    label: str
    params_b: float
    n_layers: int
    n_kv_heads: int
    head_dim: int

    def kv_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * 2 * n_ctx


SIZE_CLASSES: tuple[SizeClass, ...] = (
    SizeClass("0.5B", 0.5, 24, 2, 64),  # Qwen2.5-0.5B
    SizeClass("1B", 1.2, 16, 8, 64),  # Llama 3.2 1B
    SizeClass("1.5B", 1.5, 28, 2, 128),  # Qwen2.5-1.5B
    SizeClass("3B", 3.2, 28, 8, 128),  # Llama 3.2 3B
    SizeClass("4B", 4.0, 36, 8, 128),  # Qwen3-4B
    SizeClass("7B", 7.6, 28, 4, 128),  # Qwen2.5-7B
    SizeClass("8B", 8.0, 32, 8, 128),  # Llama 3.1 8B
    SizeClass("12B", 12.2, 40, 8, 128),  # Mistral Nemo
    SizeClass("13B", 13.0, 40, 40, 128),  # Llama 2 13B (no GQA: a big KV cache)
    SizeClass("14B", 14.8, 48, 8, 128),  # Qwen2.5-14B
    SizeClass("24B", 23.6, 40, 8, 128),  # Mistral Small
    SizeClass("32B", 32.8, 64, 8, 128),  # Qwen2.5-32B
    SizeClass("70B", 70.6, 80, 8, 128),  # Llama 3.x 70B
    SizeClass("123B", 123.0, 88, 8, 128),  # Mistral Large
    SizeClass("405B", 405.0, 126, 8, 128),  # Llama 3.1 405B
)
"""13B is kept for the sentence users know ("13B only with a short context")."""


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    params_b: float
    n_layers: int
    n_kv_heads: int
    head_dim: int
    file_bytes: dict[str, int]
    """Quantization -> GGUF size; missing ones are estimated from ``params_b``."""


LOCAL_CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel("SmolLM2-1.7B-Instruct", 1.7, 24, 32, 64, {}),
    CatalogueModel("Llama-3.2-3B-Instruct", 3.2, 28, 8, 128, {}),
    CatalogueModel("Qwen2.5-7B-Instruct", 7.6, 28, 4, 128, {}),
    CatalogueModel("Llama-3.1-8B-Instruct", 8.0, 32, 8, 128, {}),
    CatalogueModel("Mistral-Nemo-Instruct-2407", 12.2, 40, 8, 128, {}),
    CatalogueModel("Qwen2.5-14B-Instruct", 14.8, 48, 8, 128, {}),
    CatalogueModel("Mistral-Small-24B-Instruct", 23.6, 40, 8, 128, {}),
    CatalogueModel("Qwen2.5-32B-Instruct", 32.8, 64, 8, 128, {}),
    CatalogueModel("Llama-3.3-70B-Instruct", 70.6, 80, 8, 128, {}),
)
"""Stand-in for ``tui.models.catalogue`` until it lands."""


@dataclass(frozen=True)
class Fit:
    """The largest size class that fits one quantization in one memory, at three contexts."""

    quant: str
    where: str  # "RAM" or "VRAM"
    budget_bytes: int
    comfortable: str | None
    """Largest size with COMFORT_CTX tokens of context within COMFORT_SHARE of the budget."""
    usable: str | None
    """Largest size with USABLE_CTX tokens."""
    short: str | None
    """Largest size with SHORT_CTX tokens."""


@dataclass(frozen=True)
class ModelFit:
    name: str
    quant: str
    need_bytes: int
    """Weights + KV cache at USABLE_CTX + overhead."""
    in_ram: bool
    in_vram: bool


@dataclass(frozen=True)
class Capacity:
    ram_budget: int
    vram_budget: int
    """0 when there is no GPU, or the llama.cpp build cannot offload to it."""
    fits: tuple[Fit, ...]
    models: tuple[ModelFit, ...]
    summary: tuple[str, ...]
    catalogue_source: str


def need_bytes(params_b: float, bpp: float, kv_per_ctx: SizeClass | CatalogueModel,
               n_ctx: int, weights: int | None = None) -> int:
    w = weights if weights is not None else int(params_b * 1e9 * bpp)
    kv = 2 * kv_per_ctx.n_layers * kv_per_ctx.n_kv_heads * kv_per_ctx.head_dim * 2 * n_ctx
    return w + kv + OVERHEAD_BYTES


def largest(budget: int, bpp: float, n_ctx: int) -> str | None:
    best: str | None = None
    for size in SIZE_CLASSES:
        if need_bytes(size.params_b, bpp, size, n_ctx) <= budget:
            best = size.label
    return best


def fit_table(where: str, budget: int) -> list[Fit]:
    return [
        Fit(q, where, budget, largest(int(budget * COMFORT_SHARE), bpp, COMFORT_CTX),
            largest(budget, bpp, USABLE_CTX), largest(budget, bpp, SHORT_CTX))
        for q, bpp in QUANTS.items()
    ]


def _num(obj: Any, *names: str) -> float | None:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def load_catalogue() -> tuple[list[CatalogueModel], str]:
    """The shared catalogue when it is there and readable, else the local stand-in."""
    try:
        from tui.models import catalogue as mod
    except ImportError:
        return list(LOCAL_CATALOGUE), "built-in list (tui.models.catalogue not available)"
    entries: Any = None
    for attr in ("load_catalogue", "catalogue", "load", "entries"):
        fn = getattr(mod, attr, None)
        if callable(fn):
            try:
                entries = fn()
                break
            except Exception:
                entries = None
    if entries is None:
        entries = getattr(mod, "CATALOGUE", None)
    models = [m for e in (entries or ()) if (m := _adapt(e)) is not None]
    if not models:
        return list(LOCAL_CATALOGUE), "built-in list (tui.models.catalogue gave no usable rows)"
    return models, "tui.models.catalogue"


def _adapt(entry: Any) -> CatalogueModel | None:
    name = entry.get("name") if isinstance(entry, dict) else getattr(entry, "name", None)
    params = _num(entry, "params_b", "parameters_b")
    if params is None and (p := _num(entry, "params", "n_params", "parameters")):
        params = p / 1e9
    layers = _num(entry, "n_layers", "layers", "block_count")
    kv = _num(entry, "n_kv_heads", "kv_heads", "head_count_kv")
    head = _num(entry, "head_dim", "key_length")
    if not name or params is None or layers is None or kv is None or head is None:
        return None
    sizes: dict[str, int] = {}
    raw = entry.get("files") if isinstance(entry, dict) else getattr(entry, "files", None)
    if isinstance(raw, dict):
        sizes = {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}
    elif isinstance(raw, list | tuple):  # CatalogueFile(quantization, file, size)
        for f in raw:
            q = getattr(f, "quantization", None)
            size = getattr(f, "size", None)
            if isinstance(q, str) and isinstance(size, int) and size > 0:
                sizes[q] = size
    return CatalogueModel(str(name), params, int(layers), int(kv), int(head), sizes)


def model_fits(models: Iterable[CatalogueModel], ram: int, vram: int,
               quants: Sequence[str] = ("Q4_K_M",)) -> list[ModelFit]:
    out = []
    for m in models:
        for q in quants:
            need = need_bytes(m.params_b, QUANTS.get(q, 0.6), m, USABLE_CTX, m.file_bytes.get(q))
            out.append(ModelFit(m.name, q, need, need <= ram, vram > 0 and need <= vram))
    return out


def summarize(fits: Sequence[Fit], where: str) -> str | None:
    """"runs 7B models at Q4_K_M comfortably; 13B only with a short context"."""
    q4 = next((f for f in fits if f.quant == "Q4_K_M" and f.where == where), None)
    if q4 is None or q4.short is None:
        return None
    parts: list[str] = []
    if q4.comfortable:
        parts.append(f"runs {q4.comfortable} models at Q4_K_M comfortably ({COMFORT_CTX // 1024}k"
                     " context)")
    if q4.usable and q4.usable != q4.comfortable:
        parts.append(f"{q4.usable} with a {USABLE_CTX // 1024}k context")
    if q4.short != (q4.usable or q4.comfortable):
        parts.append(f"{q4.short} only with a short context ({SHORT_CTX} tokens)")
    if not q4.comfortable:
        parts[0] = "runs " + parts[0]
    return f"In {where}: {'; '.join(parts)}."


def capacity(ram_available: int, vram_free: int, gpu_offload: bool,
             catalogue: tuple[list[CatalogueModel], str] | None = None) -> Capacity:
    ram = max(0, ram_available - RAM_HEADROOM)
    vram = max(0, vram_free - VRAM_HEADROOM) if gpu_offload else 0
    fits = fit_table("RAM", ram) + (fit_table("VRAM", vram) if vram else [])
    models, source = catalogue if catalogue is not None else load_catalogue()
    lines: list[str] = []
    for where in ("VRAM", "RAM") if vram else ("RAM",):
        if (line := summarize(fits, where)) is not None:
            lines.append(line)
    if not lines:
        lines.append("Not even a 0.5B model fits with a short context: free some memory.")
    if not vram:
        lines.append("Without a GPU, speed falls as size grows: generation reads every weight "
                     "once per token, so a model twice as large answers about half as fast.")
    return Capacity(ram, vram, tuple(fits), tuple(model_fits(models, ram, vram)), tuple(lines),
                    source)
