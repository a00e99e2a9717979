"""Choosing honestly: a verdict from memory AND speed, the context to load with, and the best
quantization of a catalogue model for this machine. Pure functions of their inputs (the
resources and the speed model are passed in), so the session layer and the tests can call
them with any machine.

The verdict:
  green  fits with margin (the memory estimate is green) and generates at least the reading
         speed (``Settings.reading_speed``, 8 tokens/s by default);
  amber  fits, but tight or slower than reading speed;
  red    does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tui.i18n import _, format_number
from tui.models.fit import FitEstimate, ModelShape, Resources, Verdict, estimate_fit
from tui.models.speed import SpeedModel, SpeedPrediction

READING_SPEED = 8.0
"""Tokens per second a reader keeps up with (about 6 words a second): the default setting."""
AUTO_CONTEXTS = (32768, 16384, 8192, 4096)
"""Tried after the trained context, largest first."""
SHORT_CONTEXTS = (2048, 1024, 512)
"""Tried only when not even 4k fits with margin."""
KV_F16_BYTES = 2.0
KV_Q8_0_BYTES = 34 / 32
"""q8_0: 32 values in 34 bytes."""

# most faithful first; what llama.cpp and the usual GGUF uploads name them
QUANT_QUALITY: tuple[str, ...] = (
    "F32", "BF16", "F16", "Q8_0", "Q6_K_L", "Q6_K", "Q5_K_L", "Q5_K_M", "Q5_K_S", "Q5_1",
    "Q5_0", "Q4_K_L", "Q4_K_M", "MXFP4", "Q4_K_S", "Q4_1", "IQ4_NL", "IQ4_XS", "Q4_0",
    "Q3_K_XL", "Q3_K_L", "Q3_K_M", "IQ3_M", "IQ3_S", "Q3_K_S", "IQ3_XS", "IQ3_XXS", "Q2_K_L",
    "Q2_K", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
)


def quant_rank(name: str) -> int:
    """Lower is more faithful; unknown names sort after the known ones."""
    upper = name.upper()
    return QUANT_QUALITY.index(upper) if upper in QUANT_QUALITY else len(QUANT_QUALITY)


def combined_verdict(
    memory: Verdict, tok_s: float, reading_speed: float = READING_SPEED
) -> Verdict:
    """Memory and speed together (see the module's docstring)."""
    if memory == "red":
        return "red"
    if memory == "green" and tok_s >= reading_speed:
        return "green"
    return "amber"


def ctx_label(n_ctx: int) -> str:
    return f"{n_ctx // 1024}k" if n_ctx >= 1024 and n_ctx % 1024 == 0 else str(n_ctx)


def _gib(n: int) -> str:
    if n >= 2**30:
        return f"{format_number(n / 2**30, 1)} GiB"
    return f"{format_number(n / 2**20, 0)} MiB"


def _resident(fit: FitEstimate) -> int:
    """RAM the model holds (repacked weights' file pages left out: the kernel drops them)."""
    return fit.ram_bytes - fit.reclaimable_bytes


@dataclass(frozen=True)
class ContextChoice:
    n_ctx: int
    fit: FitEstimate
    """The memory estimate at ``n_ctx`` (f16 KV cache)."""
    reason: str
    """What was chosen and why, in one sentence."""
    chosen_automatically: bool = True
    q8_0_n_ctx: int = 0
    """A larger context a q8_0 KV cache keeps within memory with margin (0: none larger)."""

    @property
    def kv_cache_type(self) -> str:
        return "f16"


def context_candidates(trained: int) -> list[int]:
    """The trained context, then 32k, 16k, 8k, 4k below it (largest first)."""
    trained = trained or 4096
    out = [trained] + [c for c in AUTO_CONTEXTS if c < trained]
    return sorted(set(out), reverse=True)


def choose_n_ctx(
    shape: ModelShape,
    resources: Resources,
    *,
    requested: int | None = None,
    n_gpu_layers: int | None = None,
    flash_attn: bool = True,
) -> ContextChoice:
    """The context to load ``shape`` with: ``requested`` when set, else the largest of the
    trained context, 32k, 16k, 8k, 4k that keeps model + KV cache within free memory with
    margin (a green memory estimate); when none does, the largest that fits at all, down to
    512. Also says how far a q8_0 KV cache would go."""

    def fit_at(n_ctx: int, kv: float = KV_F16_BYTES) -> FitEstimate:
        return estimate_fit(shape, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, resources=resources,
                            flash_attn=flash_attn, kv_type_bytes=kv)

    trained = shape.context_length or 4096
    if requested:
        fit = fit_at(requested)
        why = _("n_ctx {ctx_label} as set", ctx_label=ctx_label(requested))
        if requested > trained:
            why += _(" (beyond the trained {ctx_label}: quality may drop)",
                     ctx_label=ctx_label(trained))
        return ContextChoice(requested, fit, why, chosen_automatically=False)
    candidates = context_candidates(trained)
    tried = ", ".join(ctx_label(c) for c in candidates)
    chosen: tuple[int, FitEstimate] | None = None
    for c in candidates:
        fit = fit_at(c)
        if fit.verdict == "green":
            chosen = (c, fit)
            break
    if chosen is not None:
        n_ctx, fit = chosen
        reason = (_("n_ctx {ctx_label}: the largest of {tried} that keeps model + KV cache "
                    "({gib}) within the {gib2} free with margin",
                    ctx_label=ctx_label(n_ctx), tried=tried, gib=_gib(_resident(fit)),
                    gib2=_gib(resources.ram_available)))
        if n_ctx == trained:
            reason = (_("n_ctx {ctx_label}: the trained context fits with margin ({gib} of "
                        "{gib2} free)",
                        ctx_label=ctx_label(n_ctx), gib=_gib(_resident(fit)),
                        gib2=_gib(resources.ram_available)))
    else:
        fallback: tuple[int, FitEstimate] | None = None
        for c in (*candidates, *SHORT_CONTEXTS):
            if c > trained:
                continue
            fit = fit_at(c)
            if fit.verdict != "red":
                fallback = (c, fit)
                break
        if fallback is None:
            smallest = min((*candidates, *SHORT_CONTEXTS))
            fit = fit_at(smallest)
            return ContextChoice(smallest, fit, (
                _("does not fit even at n_ctx {ctx_label}: {reason}",
                  ctx_label=ctx_label(smallest), reason=fit.reason)))
        n_ctx, fit = fallback
        reason = (_("n_ctx {ctx_label}: nothing from {tried} fits with margin; {ctx_label} "
                    "fits, tight ({gib} of {gib2} free)",
                    ctx_label=ctx_label(n_ctx), tried=tried, gib=_gib(_resident(fit)),
                    gib2=_gib(resources.ram_available)))
    q8 = 0
    for c in candidates:
        if c <= n_ctx:
            break
        if fit_at(c, KV_Q8_0_BYTES).verdict == "green":
            q8 = c
            break
    if q8:
        reason += _("; a q8_0 KV cache would allow {ctx_label}", ctx_label=ctx_label(q8))
    return ContextChoice(n_ctx, fit, reason, q8_0_n_ctx=q8)


@dataclass(frozen=True)
class Assessment:
    """One model (one file) on this machine: memory, speed and the verdict of both."""

    verdict: Verdict
    fit: FitEstimate
    speed: SpeedPrediction
    context: ContextChoice
    reason: str
    reading_speed: float = READING_SPEED

    @property
    def tok_s(self) -> float:
        return self.speed.tok_s

    def line(self) -> str:
        """"fits with 16k at 9 tok/s" and the like."""
        ctx = ctx_label(self.context.n_ctx)
        speed = f"{fmt_tok_s(self.speed.tok_s)} tok/s"
        if self.verdict == "red":
            return _("does not fit ({gib} needed)", gib=_gib(_resident(self.fit)))
        if self.verdict == "green":
            return _("fits with {ctx} at {speed}", ctx=ctx, speed=speed)
        if self.fit.verdict == "green":
            return _("fits with {ctx} but slow: {speed}", ctx=ctx, speed=speed)
        return _("fits tight with {ctx} at {speed}", ctx=ctx, speed=speed)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "memory_verdict": self.fit.verdict,
            "predicted_tok_s": round(self.speed.tok_s, 2),
            "predicted_prompt_tok_s": round(self.speed.prompt_tok_s, 1),
            "speed_basis": self.speed.basis, "n_ctx": self.context.n_ctx,
            "n_ctx_reason": self.context.reason, "q8_0_n_ctx": self.context.q8_0_n_ctx,
            "n_gpu_layers": self.fit.n_gpu_layers, "reason": self.reason,
            "reading_speed": self.reading_speed, "line": self.line(),
        }


def fmt_tok_s(tok_s: float) -> str:
    return f"{format_number(tok_s, 0)}" if tok_s >= 10 else f"{format_number(tok_s, 1)}"


def assess(
    shape: ModelShape,
    resources: Resources,
    speed: SpeedModel,
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    key: str | None = None,
    reading_speed: float = READING_SPEED,
) -> Assessment:
    """The verdict for ``shape`` at ``n_ctx`` (chosen automatically when None)."""
    context = choose_n_ctx(shape, resources, requested=n_ctx, n_gpu_layers=n_gpu_layers)
    fit = context.fit
    if resources.vram_total and n_gpu_layers is None and fit.verdict == "red" \
            and fit.suggested_n_gpu_layers != fit.n_gpu_layers:
        layers = fit.suggested_n_gpu_layers  # part of it on the GPU, the rest on the CPU
        context = choose_n_ctx(shape, resources, requested=n_ctx, n_gpu_layers=layers)
        fit = context.fit
    prediction = speed.predict(shape, n_gpu_layers=fit.n_gpu_layers, key=key)
    verdict = combined_verdict(fit.verdict, prediction.tok_s, reading_speed)
    rate = f"{fmt_tok_s(prediction.tok_s)} tok/s"
    if verdict == "red":
        reason = fit.reason
    elif verdict == "green":
        reason = _("fits with margin and about {rate} (reading speed {reading_speed:g})",
                   rate=rate, reading_speed=reading_speed)
    elif fit.verdict == "green":
        reason = (_("fits, but about {rate} is slower than reading speed ({reading_speed:g} "
                    "tok/s)", rate=rate, reading_speed=reading_speed))
    else:
        reason = f"{fit.reason}; about {rate}"
    return Assessment(verdict, fit, prediction, context, reason, reading_speed)


@dataclass(frozen=True)
class QuantOption:
    quantization: str
    file: str
    size: int
    assessment: Assessment

    def line(self) -> str:
        return f"{self.quantization} {self.assessment.line()}"


def rank_options(options: Sequence[QuantOption]) -> list[QuantOption]:
    return sorted(options, key=lambda o: (quant_rank(o.quantization), -o.size))


def best_option(options: Sequence[QuantOption]) -> QuantOption | None:
    """The most faithful quantization with a green verdict. When none is green: the fastest
    of those that fit with margin (speed is what is short), else the fastest that fits at all
    (memory is). None when nothing fits."""
    ranked = rank_options(options)
    for option in ranked:
        if option.assessment.verdict == "green":
            return option
    roomy = [o for o in ranked if o.assessment.verdict != "red"
             and o.assessment.fit.verdict == "green"]
    fits = roomy or [o for o in ranked if o.assessment.verdict != "red"]
    return max(fits, key=lambda o: o.assessment.tok_s, default=None)


def quant_options(
    entry: Any,
    resources: Resources,
    speed: SpeedModel,
    *,
    n_ctx: int | None = None,
    reading_speed: float = READING_SPEED,
) -> list[QuantOption]:
    """Every file of a catalogue entry judged here, most faithful first."""
    out = []
    for f in entry.files:
        a = assess(entry.shape(f.quantization), resources, speed, n_ctx=n_ctx,
                   reading_speed=reading_speed)
        out.append(QuantOption(f.quantization, f.file, f.size, a))
    return rank_options(out)


@dataclass(frozen=True)
class CatalogueChoice:
    """A catalogue entry on this machine: its files judged, and the one to take."""

    entry: Any
    """The ``CatalogueEntry``."""
    options: tuple[QuantOption, ...]
    best: QuantOption | None

    def line(self) -> str:
        if not self.options:
            return _("no GGUF file listed")
        if self.best is None:
            smallest = min(self.options, key=lambda o: o.size)
            return _("does not fit, even at {quantization} ({gib})",
                     quantization=smallest.quantization, gib=_gib(smallest.size))
        return self.best.line()


def choose_quantization(
    entry: Any,
    resources: Resources,
    speed: SpeedModel,
    *,
    n_ctx: int | None = None,
    reading_speed: float = READING_SPEED,
) -> CatalogueChoice:
    options = quant_options(entry, resources, speed, n_ctx=n_ctx, reading_speed=reading_speed)
    return CatalogueChoice(entry, tuple(options), best_option(options))
