"""What this machine can run, judged honestly: memory AND speed.

Every catalogue model is sized for this machine (``tui.models.fit``) and its speed predicted
(``tui.models.speed``, from the measured bandwidth and compute and this machine's own runs);
the verdict is ``tui.models.choice``'s: green fits with margin and writes at least the reading
speed, amber fits but is slow or tight, red does not fit. The summary names the largest model
that is comfortable by both, so a 2-core machine is no longer told it "runs 24B models
comfortably" because 14 GB fit in its RAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui.i18n import _, n_
from tui.models.catalogue import CatalogueEntry, read_catalogue
from tui.models.choice import READING_SPEED, CatalogueChoice, choose_quantization, ctx_label
from tui.models.choice import fmt_tok_s as _rate
from tui.models.fit import Resources
from tui.models.speed import MachineSpeed, SpeedModel

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class ModelAdvice:
    """One catalogue model at its best quantization here."""

    id: str
    name: str
    params: int
    quantization: str | None
    size_bytes: int
    verdict: str
    tok_s: float
    n_ctx: int
    line: str
    """"Q5_K_M fits with 16k at 9 tok/s" and the like."""


@dataclass(frozen=True)
class Capacity:
    ram_available: int
    vram_free: int
    """0 when there is no GPU, or the llama.cpp build cannot offload to it."""
    reading_speed: float
    machine: MachineSpeed
    speed_basis: str
    largest_comfortable: ModelAdvice | None
    """The largest catalogue model that is green here (memory and speed)."""
    models: tuple[ModelAdvice, ...]
    summary: tuple[str, ...]
    catalogue_source: str

    def by_verdict(self, verdict: str) -> list[ModelAdvice]:
        return [m for m in self.models if m.verdict == verdict]


def advice_of(choice: CatalogueChoice) -> ModelAdvice:
    e: CatalogueEntry = choice.entry
    best = choice.best
    if best is None:
        return ModelAdvice(e.id, e.name, e.params, None, 0, "red", 0.0, 0, choice.line())
    a = best.assessment
    return ModelAdvice(e.id, e.name, e.params, best.quantization, best.size, a.verdict,
                       a.tok_s, a.context.n_ctx, choice.line())


def _largest(models: Sequence[ModelAdvice], verdict: str) -> ModelAdvice | None:
    return max((m for m in models if m.verdict == verdict), key=lambda m: m.params, default=None)


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def summarize(models: Sequence[ModelAdvice], reading_speed: float, has_gpu: bool) -> list[str]:
    """Plain words: the largest comfortable model, then what fits but is slow."""
    lines: list[str] = []
    best = _largest(models, "green")
    if best is not None:
        lines.append(
            _("Comfortable here (fits with margin and writes at least {reading_speed:g} tok/s): "
              "up to {name} ({params}), {quantization} with a {ctx_label} context at about "
              "{rate} tok/s.",
              reading_speed=reading_speed, name=best.name, params=_params(best.params),
              quantization=best.quantization, ctx_label=ctx_label(best.n_ctx),
              rate=_rate(best.tok_s)))
    else:
        lines.append(_("No catalogue model is comfortable here: none fits with margin and "
                       "writes {reading_speed:g} tok/s.", reading_speed=reading_speed))
    slow = _largest(models, "amber")
    if slow is not None and (best is None or slow.params > best.params):
        lines.append(_("Larger ones fit but are slow or tight: {name} ({params}) at about "
                       "{rate} tok/s.",
                       name=slow.name, params=_params(slow.params), rate=_rate(slow.tok_s)))
    if not has_gpu:
        lines.append(_("Without a GPU, speed falls as size grows: generation reads every weight "
                       "once per token, so a model twice as large answers about half as fast."))
    return lines


def capacity(
    resources: Resources,
    speed: SpeedModel,
    *,
    reading_speed: float = READING_SPEED,
    entries: Sequence[CatalogueEntry] | None = None,
    catalogue_source: str = "packaged",
) -> Capacity:
    """The catalogue judged against ``resources`` with ``speed``'s predictions."""
    if entries is None:
        loaded = read_catalogue()
        entries, catalogue_source = loaded.entries, loaded.source
    choices = [choose_quantization(e, resources, speed, reading_speed=reading_speed)
               for e in entries if e.has_files]
    models = tuple(advice_of(c) for c in choices)
    fitted = speed.fitted()
    basis = (n_("calibrated from {count} model run here",
                 "calibrated from {count} models run here", fitted.models) if fitted.models
             else _("from the measured bandwidth and compute (no runs here yet)"))
    return Capacity(
        ram_available=resources.ram_available, vram_free=resources.vram_free,
        reading_speed=reading_speed, machine=speed.machine, speed_basis=basis,
        largest_comfortable=_largest(models, "green"), models=models,
        summary=tuple(summarize(models, reading_speed, resources.vram_total > 0)),
        catalogue_source=catalogue_source,
    )
