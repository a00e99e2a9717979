"""Before a run: is the base model trainable here, and what will the run cost?

The estimate has the fit estimate's style (green/amber/red): memory from the base model's
float32 weights (transformers dequantises the GGUF) plus the activations of a batch of the
longest pairs, time from the tokens to train and a rate calibrated on this project's 2-core
test machine, disk from the adapter and its checkpoint. Memory was checked against
SmolLM2-135M (estimated 1.7 GiB at rank 8, batch 4; measured peak 1.6-1.7 GiB).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tui.engine.gguf import GGUFError, GGUFHeader, read_header
from tui.i18n import _, format_number
from tui.tune.errors import INSTALL_COMMAND, TRAINING_PACKAGES, ExtraMissing, TuneError
from tui.tune.protocol import TrainParams

MiB = 1 << 20
GiB = 1 << 30
SUPPORTED_ARCHS = ("llama", "gemma3")
"""Architectures transformers reads from a GGUF and whose LoRA export is tested here."""

RUNTIME_BYTES = 420 * MiB
"""The training process with torch, transformers, peft and llama_cpp imported."""
LOAD_FACTOR = 2.0
"""Peak float32 copies of the weights while transformers dequantises the GGUF."""
PER_TOKEN_LAYER_BYTES = 48
"""Activations kept for the backward pass, per token, layer and hidden unit (float32)."""
PARAM_TOKENS_PER_S_PER_CORE = 3.4e9
"""Training speed: (tokens/s) x (parameters) per physical core. SmolLM2-135M trained at
16 tok/s on this project's 2-core machine while other jobs held about two thirds of it, so
about 50 tok/s on idle cores; not yet measured on an idle machine."""
STEP_OVERHEAD_S = 0.05

Verdict = Literal["green", "amber", "red"]


def missing_packages() -> list[str]:
    return [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]


def require_extra() -> None:
    """``ExtraMissing`` (one line with the install command) when the extra is not installed."""
    missing = missing_packages()
    if missing:
        raise ExtraMissing(_("fine-tuning needs the optional training packages ({join} "
                             "missing): {INSTALL_COMMAND}",
                             join=', '.join(missing), INSTALL_COMMAND=INSTALL_COMMAND))


def read_base(path: str | Path) -> GGUFHeader:
    """The base model's header; ``TuneError`` when the trainer cannot use it."""
    try:
        header = read_header(path)
    except GGUFError as exc:
        raise TuneError(_("cannot read the base model: {exc}", exc=exc)) from None
    arch = header.architecture
    if arch not in SUPPORTED_ARCHS:
        raise TuneError(_("the trainer cannot read {name}: it is a {value} model, and lmdesk "
                          "tunes {join} models",
                          name=Path(path).name, value=arch or _('unknown'),
                          join=' and '.join(SUPPORTED_ARCHS)))
    if str(header.get("general.type", "model")) != "model":
        raise TuneError(_("{name} is not a base model (it is a {get} file)",
                          name=Path(path).name, get=header.get('general.type')))
    return header


@dataclass(frozen=True)
class Resources:
    ram_available: int
    disk_free: int
    cores: int

    @classmethod
    def current(cls, folder: Path) -> Resources:
        import psutil

        from tui.engine.local import physical_cores

        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return cls(psutil.virtual_memory().available, shutil.disk_usage(probe).free,
                   physical_cores())


@dataclass(frozen=True)
class Estimate:
    n_pairs: int
    n_train: int
    n_holdout: int
    tokens: int
    """Tokens of all pairs (prompt and response) in the chat template."""
    response_tokens: int
    longest: int
    steps: int
    train_tokens: int
    """Tokens the training processes: the training pairs, once per epoch."""
    seconds: float
    ram_bytes: int
    adapter_bytes: int
    disk_bytes: int
    verdict: Verdict
    reason: str

    def summary(self) -> str:
        return (_("{n_pairs} pairs ({n_train} to train, {n_holdout} held out), {tokens:,} "
                  "tokens; {steps} steps, about {duration}, {size} RAM, {size2} disk: {verdict} "
                  "({reason})",
                  n_pairs=self.n_pairs, n_train=self.n_train, n_holdout=self.n_holdout,
                  tokens=self.tokens, steps=self.steps, duration=_duration(self.seconds),
                  size=_size(self.ram_bytes), size2=_size(self.disk_bytes), verdict=self.verdict,
                  reason=self.reason))


def _size(n: float) -> str:
    return f"{format_number(n / GiB, 1)} GiB" if n >= GiB else f"{format_number(n / MiB, 0)} MiB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def adapter_params(header: GGUFHeader, rank: int) -> int:
    """LoRA parameters over the attention and MLP projections of every layer."""
    e, f = header.embedding_length, header.feed_forward_length
    h, hkv = header.n_heads, header.n_kv_heads or header.n_heads
    dk, dv = header.key_length, header.value_length
    per_layer = ((e + h * dk) + (e + hkv * dk) + (e + hkv * dv) + (h * dv + e)
                 + 2 * (e + f) + (f + e))
    return rank * per_layer * header.n_layers


def split_sizes(n_pairs: int, holdout: float) -> tuple[int, int]:
    """(train, held out): at least one held out when asked and there are 5 pairs or more."""
    if holdout <= 0 or n_pairs < 5:
        return n_pairs, 0
    n_hold = min(n_pairs - 1, max(1, round(n_pairs * holdout)))
    return n_pairs - n_hold, n_hold


def estimate(header: GGUFHeader, tokens: list[int], response_tokens: list[int],
             params: TrainParams, resources: Resources) -> Estimate:
    n_train, n_hold = split_sizes(len(tokens), params.holdout)
    per_epoch = round(sum(tokens) * n_train / max(1, len(tokens)))
    steps = -(-n_train // params.batch_size) * params.epochs
    n_params = max(1, header.n_params)
    rate = PARAM_TOKENS_PER_S_PER_CORE * max(1, resources.cores) / n_params
    seconds = per_epoch * params.epochs / rate + steps * STEP_OVERHEAD_S
    longest = max(tokens, default=0)
    weights = 4 * n_params
    activations = (params.batch_size * longest * header.n_layers * header.embedding_length
                   * PER_TOKEN_LAYER_BYTES)
    logits = params.batch_size * max(response_tokens, default=0) * header.vocab_size * 4 * 3
    ram = int(RUNTIME_BYTES + LOAD_FACTOR * weights + activations + logits)
    adapter = 4 * adapter_params(header, params.rank)
    disk = 6 * adapter + 8 * MiB  # the adapter, a checkpoint with Adam's two moments, a temp
    if ram > resources.ram_available:
        verdict: Verdict = "red"
        reason = (_("needs about {size} of memory and {size2} is free",
                    size=_size(ram), size2=_size(resources.ram_available)))
    elif disk > resources.disk_free:
        verdict, reason = "red", (_("needs {size} of disk and {size2} is free",
                                    size=_size(disk), size2=_size(resources.disk_free)))
    elif ram > 0.7 * resources.ram_available or seconds > 3 * 3600:
        verdict, reason = "amber", (_("tight on memory") if ram > 0.7 * resources.ram_available
                                    else _("a long run"))
    else:
        verdict, reason = "green", _("fits this machine")
    return Estimate(len(tokens), n_train, n_hold, sum(tokens), sum(response_tokens), longest,
                    steps, per_epoch * params.epochs, seconds, ram, adapter, disk, verdict,
                    reason)


def check_fits(est: Estimate, resources: Resources) -> None:
    """``TuneError`` when the run cannot fit: not enough memory or disk."""
    if est.ram_bytes > resources.ram_available:
        raise TuneError(_("not enough memory: training needs about {size} and {size2} is free; "
                          "close other programs, or use shorter pairs or a smaller base model",
                          size=_size(est.ram_bytes), size2=_size(resources.ram_available)))
    if est.disk_bytes > resources.disk_free:
        raise TuneError(_("not enough disk: the adapter and its checkpoint need about {size} "
                          "and {size2} is free in the data folder",
                          size=_size(est.disk_bytes), size2=_size(resources.disk_free)))


def check_params(params: TrainParams) -> None:
    if not 1 <= params.epochs <= 1000:
        raise TuneError(_("--epochs must be between 1 and 1000, got {epochs}",
                          epochs=params.epochs))
    if not 1 <= params.rank <= 512:
        raise TuneError(_("--rank must be between 1 and 512, got {rank}", rank=params.rank))
    if not 0 < params.learning_rate < 1:
        raise TuneError(_("--lr must be between 0 and 1, got {learning_rate}",
                          learning_rate=params.learning_rate))
    if not 0 <= params.holdout < 1:
        raise TuneError(_("--holdout must be at least 0 and below 1, got {holdout}",
                          holdout=params.holdout))
    if not 1 <= params.batch_size <= 256:
        raise TuneError(_("--batch must be between 1 and 256, got {batch_size}",
                          batch_size=params.batch_size))
    if params.alpha is not None and params.alpha <= 0:
        raise TuneError(_("--alpha must be positive, got {alpha}", alpha=params.alpha))
