"""Will this model fit here? An estimate of a model's memory before loading it.

The worker's resident memory after loading and a first reply is modelled as

    runtime (Python, llama.cpp libraries, the worker: a constant)
  + weights (the GGUF's mapped tensor data, all resident once the model has run)
  + repacked weights (the CPU backend copies Q4_0/Q4_K/IQ4_NL matrices into an interleaved
    layout; the file pages stay mapped too)
  + KV cache: cells x layers x n_kv_heads x (key_length + value_length) x bytes per element
    (f16: 2). llama.cpp rounds cells up to 256. Sliding-window layers (gemma2/3, cohere2,
    gpt-oss) get only window + n_ubatch cells, unless swa_full, which llama-cpp-python turns
    on by default: then every layer gets the full context.
  + tokenizer tables (per vocabulary entry and per BPE merge) and the output/sampling buffers
  + compute: the activations of one full batch (n_ubatch tokens) attending to a short
    context; llama.cpp reserves a larger buffer (logits for every batch token) but only the
    pages it writes become resident.

``peak_extra_bytes`` is what the compute grows by when a full batch meets a full context
without flash attention (the attention scores: n_head x n_ctx x n_ubatch floats, twice).

The constants were calibrated against the measured RSS of SmolLM2-135M (Q4_1, BPE) and
Gemma 3 270M (Q4_K_M, SWA), and checked on two synthetic llama GGUFs (Q8_0 untied, Q4_0 tied)
at n_ctx 2048 and 8192 on an x86-64 CPU build. GPU figures are not calibrated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tui.engine.gguf import GGML_TYPES, GGUFHeader, read_header
from tui.i18n import N_, _, format_number

MiB = 1 << 20
GiB = 1 << 30

RUNTIME_BYTES = 49 * MiB
"""A spawned worker with llama_cpp imported, before any model (measured 48.6-49 MiB)."""
LOAD_FIXED_BYTES = int(4.7 * MiB)
PER_VOCAB_BYTES = 157 + 4 + 40
"""Tokenizer tables (157), the output logits row (4) and sampling arrays (40) per token."""
PER_MERGE_BYTES = 195
COMPUTE_FACTOR = 0.75
CUDA_CONTEXT_VRAM = 400 * MiB
"""What a CUDA context and cuBLAS workspace take on the card (not calibrated here)."""
CUDA_HOST_BYTES = 200 * MiB
"""Host memory the CUDA runtime adds to the worker (not calibrated here)."""
DEFAULT_CTX_CAP = 8192
CTX_CANDIDATES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)

# ggml type ids whose matrices the CPU backend repacks (x86 AVX2 / ARM NEON builds)
_REPACKED_TYPES = frozenset({2, 12, 20})  # Q4_0, Q4_K, IQ4_NL
# architectures with sliding-window layers: every Nth layer is global, the others use the window
_SWA_PATTERN: dict[str, int] = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2}

Verdict = Literal["green", "amber", "red"]
VERDICT_NAMES: dict[str, str] = {"green": N_("green"), "amber": N_("amber"), "red": N_("red")}


def verdict_name(verdict: str) -> str:
    """A verdict as a person reads it, in the current language (``verde`` in Spanish)."""
    return _(VERDICT_NAMES.get(verdict, verdict))


@dataclass(frozen=True)
class ModelShape:
    """The numbers the estimate needs, from a GGUF header or from the catalogue."""

    name: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    key_length: int
    value_length: int
    embedding_length: int
    feed_forward_length: int
    vocab_size: int
    context_length: int
    n_params: int
    weights_bytes: int
    """Tensor data that stays mapped in RAM (on CPU)."""
    repack_bytes: int = 0
    n_merges: int = 0
    sliding_window: int = 0
    swa_layers: int = 0
    layer_bytes: int = 0
    """Weights of one repeating layer (what offloading a layer moves to the GPU)."""
    read_bytes: int = 0
    """Weights read per generated token: all but an untied token embedding (one row), and
    only the routed share of a mixture of experts (0: ``weights_bytes``)."""
    active_params: int = 0
    """Parameters in the matrix products of one token (0: ``n_params``)."""

    @classmethod
    def from_header(cls, header: GGUFHeader) -> ModelShape:
        arch = header.architecture
        n_layers = header.n_layers
        window = header.sliding_window
        swa_layers = 0
        if window and arch in _SWA_PATTERN:
            pattern = _SWA_PATTERN[arch]
            swa_layers = sum(1 for il in range(n_layers) if il % pattern < pattern - 1)
        repacked = _repacked_bytes(header)
        resident = _resident_bytes(header)
        blk = sum(t.n_bytes for t in header.tensors if t.name.startswith("blk."))
        read_bytes, active = _per_token(header)
        return cls(
            name=header.name,
            architecture=arch,
            n_layers=n_layers,
            n_heads=header.n_heads,
            n_kv_heads=header.n_kv_heads,
            key_length=header.key_length,
            value_length=header.value_length,
            embedding_length=header.embedding_length,
            feed_forward_length=header.feed_forward_length,
            vocab_size=header.vocab_size,
            context_length=header.context_length,
            n_params=header.n_params,
            weights_bytes=resident,
            repack_bytes=repacked,
            n_merges=header.n_merges,
            sliding_window=window,
            swa_layers=swa_layers,
            layer_bytes=blk // n_layers if n_layers else 0,
            read_bytes=read_bytes,
            active_params=active,
        )

    def kv_bytes(
        self, n_ctx: int, *, n_ubatch: int = 512, swa_full: bool = True, type_bytes: float = 2.0,
        layers: int | None = None,
    ) -> int:
        """KV cache for ``n_ctx`` tokens (over ``layers`` of them; default: all)."""
        cells = _pad(n_ctx, 256)
        per_cell = self.n_kv_heads * (self.key_length + self.value_length) * type_bytes
        n_layers = self.n_layers if layers is None else min(layers, self.n_layers)
        swa = round(self.swa_layers * n_layers / self.n_layers) if self.n_layers else 0
        swa_cells = cells if swa_full else min(cells, _pad(self.sliding_window + n_ubatch, 256))
        return int(per_cell * ((n_layers - swa) * cells + swa * swa_cells))

    def compute_bytes(self, n_tokens: int, n_kv: int) -> int:
        """Activations of a batch of ``n_tokens`` attending to ``n_kv`` cached tokens."""
        per_token = 2 * self.n_heads * n_kv + 3 * self.feed_forward_length
        per_token += 4 * self.embedding_length
        return int(4 * n_tokens * per_token * COMPUTE_FACTOR)


@dataclass(frozen=True)
class Resources:
    """What this machine has free for a model."""

    ram_available: int
    ram_total: int
    vram_free: int = 0
    vram_total: int = 0
    gpu_name: str | None = None

    @classmethod
    def current(cls) -> Resources:
        """RAM from psutil; VRAM from NVML where there is an NVIDIA GPU (the largest card)."""
        import psutil

        from tui.monitor.gpu import GpuUnavailable, NvmlSource

        vm = psutil.virtual_memory()
        source = NvmlSource(retry_s=0)
        try:
            gpus = source.read(())
        except GpuUnavailable:
            gpus = ()
        finally:
            source.close()
        best = max(gpus, key=lambda g: g.free_bytes, default=None)
        if best is None:
            return cls(vm.available, vm.total)
        return cls(vm.available, vm.total, best.free_bytes, best.total_bytes, best.name)


@dataclass(frozen=True)
class FitEstimate:
    model: str
    verdict: Verdict
    n_ctx: int
    n_gpu_layers: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    """Runtime, tokenizer tables, repacked copies, output buffers."""
    ram_bytes: int
    """The estimated resident memory of the worker (what the monitor will show for it)."""
    vram_bytes: int
    peak_extra_bytes: int
    """More compute once a full batch meets a full context (no flash attention)."""
    reclaimable_bytes: int
    """File pages of repacked weights: counted in RSS, but the kernel can drop them."""
    ram_available: int
    vram_free: int
    suggested_n_ctx: int
    suggested_n_gpu_layers: int
    reason: str
    notes: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.ram_bytes + self.vram_bytes

    def summary(self) -> str:
        parts = [_("{verdict}: needs {fmt} RAM", verdict=verdict_name(self.verdict),
                   fmt=_fmt(self.ram_bytes))]
        if self.vram_bytes:
            parts.append(_("+ {fmt} VRAM ({n_gpu_layers} layers)",
                           fmt=_fmt(self.vram_bytes), n_gpu_layers=self.n_gpu_layers))
        parts.append(
            _("(weights {fmt}, KV {fmt2} at n_ctx {n_ctx}, compute {fmt3}, other {fmt4})",
              fmt=_fmt(self.weights_bytes), fmt2=_fmt(self.kv_bytes), n_ctx=self.n_ctx,
              fmt3=_fmt(self.compute_bytes), fmt4=_fmt(self.overhead_bytes))
        )
        parts.append(_("of {fmt} available", fmt=_fmt(self.ram_available)))
        return " ".join(parts)


def _fmt(n: int) -> str:
    if abs(n) >= GiB:
        return f"{format_number(n / GiB, 1)} GiB"
    return f"{format_number(n / MiB, 0)} MiB"


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _repacked_bytes(header: GGUFHeader) -> int:
    total = 0
    names = {t.name for t in header.tensors}
    for t in header.tensors:
        matrix = len(t.shape) == 2 and t.shape[1] % 8 == 0 and t.type_id in _REPACKED_TYPES
        if not matrix:
            continue
        if t.name.startswith("blk.") or t.name == "output.weight":
            total += t.n_bytes
        elif t.name == "token_embd.weight" and "output.weight" not in names:
            total += t.n_bytes  # tied output: llama.cpp repacks a second copy for the matmul
    return total


_EXPERT_TENSOR = re.compile(r"_exps\.|\.ffn_(gate|up|down)\.\d+\.weight$")


def _per_token(header: GGUFHeader) -> tuple[int, int]:
    """(bytes read, parameters multiplied) per generated token."""
    names = {t.name for t in header.tensors}
    tied = "output.weight" not in names
    n_expert = int(header.arch_key("expert_count", 0) or 0)
    n_used = int(header.arch_key("expert_used_count", 0) or 0)
    routed = n_used / n_expert if n_expert and 0 < n_used <= n_expert else 1.0
    read = params = 0
    for t in header.tensors:
        if t.name == "token_embd.weight" and not tied:
            rows = t.shape[-1] if t.shape else 1
            read += t.n_bytes // max(1, rows)  # one row looked up per token
            continue
        share = routed if _EXPERT_TENSOR.search(t.name) else 1.0
        read += int(t.n_bytes * share)
        params += int(t.n_elements * share)
    return read, params


def _resident_bytes(header: GGUFHeader) -> int:
    """The span of the file llama.cpp keeps mapped: tensors not repacked, first to last."""
    kept = [
        t for t in header.tensors
        if not (t.name.startswith("blk.") and len(t.shape) == 2 and t.shape[1] % 8 == 0
                and t.type_id in _REPACKED_TYPES)
    ]
    if not kept or any(t.type_id not in GGML_TYPES for t in header.tensors):
        return header.weights_bytes
    start = min(t.offset for t in kept)
    end = max(t.offset + t.n_bytes for t in kept)
    return min(header.weights_bytes, end - start)


def shape_of(model: GGUFHeader | ModelShape | str | os.PathLike[str]) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    header = model if isinstance(model, GGUFHeader) else read_header(Path(model))
    return ModelShape.from_header(header)


@dataclass(frozen=True)
class _Need:
    ram: int
    vram: int
    weights: int
    kv: int
    compute: int
    overhead: int
    peak_extra: int
    reclaimable: int


def _need(
    s: ModelShape, n_ctx: int, n_gpu_layers: int, *, n_ubatch: int, flash_attn: bool,
    swa_full: bool, kv_type_bytes: float,
) -> _Need:
    gpu_layers = s.n_layers if n_gpu_layers < 0 else min(n_gpu_layers, s.n_layers + 1)
    on_gpu = min(gpu_layers, s.n_layers)
    batch = min(n_ctx, n_ubatch)
    kv_all = s.kv_bytes(n_ctx, n_ubatch=n_ubatch, swa_full=swa_full, type_bytes=kv_type_bytes)
    kv_gpu = s.kv_bytes(n_ctx, n_ubatch=n_ubatch, swa_full=swa_full, type_bytes=kv_type_bytes,
                        layers=on_gpu)
    compute = s.compute_bytes(batch, _pad(batch, 256))
    n_kv_short = _pad(batch, 256)
    peak = 0 if flash_attn else 4 * 2 * s.n_heads * batch * max(0, _pad(n_ctx, 256) - n_kv_short)
    peak = int(peak * COMPUTE_FACTOR)
    tokenizer = LOAD_FIXED_BYTES + PER_VOCAB_BYTES * s.vocab_size + PER_MERGE_BYTES * s.n_merges
    if gpu_layers == 0:
        overhead = RUNTIME_BYTES + tokenizer + s.repack_bytes
        ram = s.weights_bytes + overhead + kv_all + compute
        return _Need(ram, 0, s.weights_bytes, kv_all, compute, overhead, peak, s.repack_bytes)
    moved = s.layer_bytes * on_gpu
    if gpu_layers > s.n_layers:  # the output layer too
        moved += max(0, s.weights_bytes - s.layer_bytes * s.n_layers) // 2
    moved = min(moved, s.weights_bytes)
    repack_left = s.repack_bytes * (s.n_layers - on_gpu) // max(1, s.n_layers)
    overhead = RUNTIME_BYTES + CUDA_HOST_BYTES + tokenizer + repack_left
    gpu_compute = 4 * batch * (s.vocab_size + 4 * s.embedding_length + 2 * s.feed_forward_length)
    if not flash_attn:
        gpu_compute += 4 * 2 * s.n_heads * batch * _pad(n_ctx, 256)
    vram = moved + kv_gpu + gpu_compute + CUDA_CONTEXT_VRAM
    ram = (s.weights_bytes - moved) + overhead + (kv_all - kv_gpu) + compute
    return _Need(ram, vram, s.weights_bytes, kv_all, compute + gpu_compute, overhead, 0,
                 repack_left)


def estimate_fit(
    model: GGUFHeader | ModelShape | str | os.PathLike[str],
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    resources: Resources | None = None,
    n_ubatch: int = 512,
    flash_attn: bool = True,
    swa_full: bool = True,
    kv_type_bytes: float = 2.0,
) -> FitEstimate:
    """Estimate what loading ``model`` with ``n_ctx`` costs here, and what would fit.

    ``n_ctx`` None: the model's trained context capped at 8192 (the engine's default).
    ``n_gpu_layers`` None: all layers when there is free VRAM, else 0; -1: all.
    Raises ``GGUFError`` for an unreadable file.
    """
    s = shape_of(model)
    res = resources if resources is not None else Resources.current()
    has_gpu = res.vram_total > 0
    ctx = n_ctx or min(s.context_length or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
    layers = (-1 if has_gpu else 0) if n_gpu_layers is None else n_gpu_layers
    if not has_gpu:
        layers = 0

    def need_at(c: int, n_layers: int) -> _Need:
        return _need(s, c, n_layers, n_ubatch=n_ubatch, flash_attn=flash_attn, swa_full=swa_full,
                     kv_type_bytes=kv_type_bytes)

    def verdict_of(need: _Need) -> Verdict:
        margin = max(256 * MiB, res.ram_total // 20)
        vram_ok = need.vram <= res.vram_free
        ram = need.ram - need.reclaimable
        if ram > res.ram_available or not vram_ok:
            return "red"
        if ram + need.peak_extra + margin > res.ram_available:
            return "amber"
        if need.vram and need.vram + 256 * MiB > res.vram_free:
            return "amber"
        return "green"

    need = need_at(ctx, layers)
    verdict = verdict_of(need)
    sug_layers = layers
    if has_gpu:
        sug_layers = 0
        for n in range(s.n_layers + 1, -1, -1):
            if verdict_of(need_at(ctx, n)) != "red":
                sug_layers = -1 if n > s.n_layers else n
                break
    trained = s.context_length or DEFAULT_CTX_CAP
    candidates = [c for c in CTX_CANDIDATES if c <= trained] or [trained]
    sug_ctx = 0
    for want in ("green", "amber"):
        fits = [c for c in candidates if verdict_of(need_at(c, sug_layers)) == want]
        if fits:
            sug_ctx = max(fits)
            break
    notes: list[str] = []
    if ctx > trained:
        notes.append(_("n_ctx {ctx} is beyond the trained context {trained}: quality may drop",
                       ctx=ctx, trained=trained))
    if not swa_full and s.swa_layers:
        notes.append(_("{swa_layers} sliding-window layers cache {sliding_window} tokens",
                       swa_layers=s.swa_layers, sliding_window=s.sliding_window))
    if layers and not has_gpu:
        notes.append(_("no GPU: all layers run on the CPU"))
    reason = _reason(verdict, need, res, ctx, sug_ctx)
    return FitEstimate(
        model=s.name, verdict=verdict, n_ctx=ctx, n_gpu_layers=layers,
        weights_bytes=need.weights, kv_bytes=need.kv, compute_bytes=need.compute,
        overhead_bytes=need.overhead, ram_bytes=need.ram, vram_bytes=need.vram,
        peak_extra_bytes=need.peak_extra, reclaimable_bytes=need.reclaimable,
        ram_available=res.ram_available,
        vram_free=res.vram_free, suggested_n_ctx=sug_ctx, suggested_n_gpu_layers=sug_layers,
        reason=reason, notes=tuple(notes),
    )


def _reason(verdict: Verdict, need: _Need, res: Resources, ctx: int, sug_ctx: int) -> str:
    if verdict == "green":
        return _("fits: {fmt} of {fmt2} available RAM",
                 fmt=_fmt(need.ram), fmt2=_fmt(res.ram_available))
    if need.vram > res.vram_free:
        return (
            _("needs {fmt} VRAM but {fmt2} is free: offload fewer layers",
              fmt=_fmt(need.vram), fmt2=_fmt(res.vram_free))
        )
    if verdict == "red":
        tip = _("; n_ctx {sug_ctx} would fit",
                sug_ctx=sug_ctx) if sug_ctx else _("; a smaller quantization may fit")
        return _("needs {fmt} RAM but {fmt2} is available{tip}",
                 fmt=_fmt(need.ram), fmt2=_fmt(res.ram_available), tip=tip)
    return (
        _("tight: {fmt} of {fmt2} available, up to {fmt3} when the {ctx}-token context fills",
          fmt=_fmt(need.ram), fmt2=_fmt(res.ram_available), fmt3=_fmt(need.ram + need.peak_extra),
          ctx=ctx)
    )



@dataclass(frozen=True)
class Measured:
    """A real load: the worker's resident memory after loading and after one short reply."""

    rss_loaded: int
    rss_after_reply: int
    n_ctx: int
    load_seconds: float


def measure_rss(path: str | os.PathLike[str], n_ctx: int | None = None) -> Measured:
    """Load ``path`` in a model worker, run one short reply, and read the worker's RSS."""
    import psutil

    from tui.engine.local import LocalEngine
    from tui.engine.protocol import ChatMessage, LoadParams, SamplingParams

    with LocalEngine(LoadParams(model_path=str(path), n_ctx=n_ctx)) as engine:
        info = engine.load()
        proc = psutil.Process(info.worker_pid)
        loaded = proc.memory_info().rss
        raw = None if info.chat_template else "Once upon a time"
        for _event in engine.generate([ChatMessage("user", "Hello! Tell me a short story.")],
                                 SamplingParams(max_tokens=8, seed=1), raw_prompt=raw):
            pass
        after = proc.memory_info().rss
    return Measured(loaded, after, info.n_ctx, info.load_seconds)
