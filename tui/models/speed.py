"""Predicted tokens per second on this machine, calibrated from its own measured runs.

Generating a token reads every weight that token uses, once, and multiplies each by the
token's activations, so the time per token is

    t_gen = k_w x max(bytes_read / bandwidth, 2 x active params / matvec rate)
          + k_over x overhead

``bytes_read``: the repeating layers' matrices (only the routed experts of a mixture of
experts), the output matrix (the token embedding when it is tied) and the KV cache up to the
position reached. ``bandwidth`` is measured here (parallel sums over an array larger than the
caches, with as many threads as generation uses), times ``MEMORY_EFFICIENCY``. The matvec
rate is the measured float32 matrix product rate times ``GEN_FLOPS_EFFICIENCY``: a machine
with few cores is bound by arithmetic before memory. ``overhead`` is the per-token work that
does not grow with the weights: llama.cpp's graph and its thread barriers (per layer), the
logits over the vocabulary and sampling, the pipe to the app. Evaluating a prompt is compute
bound:

    t_prompt = k_flops x 2 x active params / flops + per-layer overhead / batch

with ``flops`` a measured float32 matrix product (numpy) on the same threads.

The multipliers ``k_*`` start at 1 (the physical model) and are fitted to this machine's own
measured runs: bench runs, ``lmdesk models info --measure`` and the stats of real replies
(``tui.models.calibration.calibrate_from_reply``), kept in ``speed-calibration.json`` in
the data folder. Each model counts
once (the median of its last runs), the fit is in log space with a pull towards 1, so one
model's runs correct the overhead (what small models are bound by) and runs of a larger one
correct the bandwidth share. A model with runs of its own is predicted mostly from them:
after n runs the weight of its own median is n / (n + 0.5).
"""

from __future__ import annotations

import math
import os
import statistics
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tui.i18n import _, n_
from tui.models.fit import ModelShape

RUNS_PER_MODEL = 20
"""A model's last runs that count (older ones are dropped from the calibration)."""
MIN_PROMPT_EVALUATED = 64
"""Prompt rates from fewer evaluated tokens are overhead, not compute."""
DEFAULT_CONTEXT = 512
"""The position a prediction assumes (a short chat); a longer context reads more KV cache."""

MEMORY_EFFICIENCY = 0.8
"""Share of the measured read bandwidth a large model's generation reaches on a CPU."""
FLOPS_EFFICIENCY = 0.5
"""Share of the float32 matrix product rate that quantized prompt evaluation reaches."""
GEN_FLOPS_EFFICIENCY = 0.15
"""Share of it that one token's quantized matrix-vector products reach (no batch to reuse
the unpacked weights across)."""
OVERHEAD_FIXED_S = 1.0e-3
OVERHEAD_PER_LAYER_S = 1.0e-4
OVERHEAD_PER_VOCAB_S = 2.5e-8
PROMPT_OVERHEAD_PER_LAYER_S = 1.0e-3
"""Per batch of prompt tokens (a batch is up to 512 tokens)."""
GPU_MEMORY_EFFICIENCY = 0.65
GPU_FLOPS_PER_BYTE = 100.0
"""A GPU's usable prompt throughput relative to its memory bandwidth (not calibrated here)."""
GPU_OVERHEAD_FIXED_S = 5.0e-4
GPU_OVERHEAD_PER_LAYER_S = 2.0e-5
PRIOR_WEIGHT = 0.05
"""How strongly the fit is pulled towards the physical model (in observations)."""


@dataclass(frozen=True)
class MachineSpeed:
    """What this machine's memory and cores do, measured once and kept."""

    bandwidth_gb_s: float
    """Read bandwidth with ``threads`` threads."""
    gflops: float
    """float32 matrix product throughput on all cores."""
    threads: int
    cpu: str = ""
    """CPU model and logical cores: a probe taken on another machine is taken again."""
    gpu_bandwidth_gb_s: float = 0.0
    gpu_name: str = ""
    measured_at: float = 0.0

    @property
    def has_gpu(self) -> bool:
        return self.gpu_bandwidth_gb_s > 0


@dataclass(frozen=True)
class Run:
    """One measured run of one model on this machine."""

    key: str
    """The model file's identity: its name and size (a hardlink or a moved file stays one)."""
    read_bytes: int
    kv_bytes_per_token: int
    n_layers: int
    vocab_size: int
    active_params: int
    n_threads: int
    n_gpu_layers: int
    gen_tok_s: float
    prompt_tok_s: float
    prompt_tokens: int
    evaluated_prompt_tokens: int
    generated_tokens: int
    source: str
    """"reply", "bench" or "measure"."""
    at: float = 0.0
    gpu_layer_share: float = 0.0
    """Share of the layers on the GPU (0 on a CPU run)."""


@dataclass(frozen=True)
class SpeedPrediction:
    tok_s: float
    """Generated tokens per second."""
    prompt_tok_s: float
    """Prompt tokens evaluated per second."""
    n_gpu_layers: int
    basis: str
    """How the figure was reached, in words."""
    own_runs: int = 0
    """This model's own measured runs behind the figure."""
    memory_share: float = 0.0
    """Share of a token's time spent on the weights (the rest is fixed overhead)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenCost:
    """What one model costs per token, from its shape."""

    read_bytes: int
    kv_bytes_per_token: int
    n_layers: int
    vocab_size: int
    active_params: int

    @classmethod
    def of(cls, shape: ModelShape) -> TokenCost:
        per_cell = shape.n_kv_heads * (shape.key_length + shape.value_length) * 2
        return cls(
            read_bytes=shape.read_bytes or shape.weights_bytes,
            kv_bytes_per_token=per_cell * shape.n_layers,
            n_layers=max(1, shape.n_layers),
            vocab_size=shape.vocab_size,
            active_params=shape.active_params or shape.n_params,
        )


@dataclass(frozen=True)
class Fitted:
    """The multipliers fitted to the runs (1.0: the physical model)."""

    k_mem: float = 1.0
    k_over: float = 1.0
    k_flops: float = 1.0
    models: int = 0
    """Distinct models behind the generation fit."""
    prompt_models: int = 0


def model_key(path: str | os.PathLike[str], size: int | None = None) -> str:
    p = Path(path)
    if size is None:
        try:
            size = p.stat().st_size
        except OSError:
            size = 0
    return f"{p.name}:{size}"


# -- the physical model ------------------------------------------------------------------------


def _weights_time(cost: TokenCost, machine: MachineSpeed, position: float,
                  gpu_share: float) -> float:
    """Reading the weights or multiplying by them, whichever is slower (per token)."""
    return max(_memory_time(cost, machine, position, gpu_share),
               _matvec_time(cost, machine, gpu_share))


def _matvec_time(cost: TokenCost, machine: MachineSpeed, gpu_share: float) -> float:
    rate = machine.gflops * 1e9 * GEN_FLOPS_EFFICIENCY
    seconds = 2.0 * cost.active_params * (1 - gpu_share) / rate if rate > 0 else math.inf
    return seconds  # the GPU's share: bound by its memory long before its arithmetic


def _memory_time(cost: TokenCost, machine: MachineSpeed, position: float,
                 gpu_share: float) -> float:
    total = cost.read_bytes + cost.kv_bytes_per_token * position
    cpu_bw = machine.bandwidth_gb_s * 1e9 * MEMORY_EFFICIENCY
    seconds = total * (1 - gpu_share) / cpu_bw if cpu_bw > 0 else math.inf
    if gpu_share:
        gpu_bw = machine.gpu_bandwidth_gb_s * 1e9 * GPU_MEMORY_EFFICIENCY
        seconds += total * gpu_share / gpu_bw if gpu_bw > 0 else math.inf
    return seconds


def _overhead_time(cost: TokenCost, gpu_share: float) -> float:
    if gpu_share >= 1.0:
        return GPU_OVERHEAD_FIXED_S + GPU_OVERHEAD_PER_LAYER_S * cost.n_layers
    cpu = (OVERHEAD_FIXED_S + OVERHEAD_PER_LAYER_S * cost.n_layers * (1 - gpu_share)
           + OVERHEAD_PER_VOCAB_S * cost.vocab_size)
    return cpu + (GPU_OVERHEAD_PER_LAYER_S * cost.n_layers * gpu_share if gpu_share else 0.0)


def _prompt_time(cost: TokenCost, machine: MachineSpeed, gpu_share: float,
                 batch: int = 512) -> float:
    """Seconds per prompt token (compute, plus the per-layer overhead shared by a batch)."""
    flops = 2.0 * cost.active_params
    cpu_rate = machine.gflops * 1e9 * FLOPS_EFFICIENCY
    seconds = flops * (1 - gpu_share) / cpu_rate if cpu_rate > 0 else math.inf
    if gpu_share:
        gpu_rate = machine.gpu_bandwidth_gb_s * 1e9 * GPU_FLOPS_PER_BYTE
        seconds += flops * gpu_share / gpu_rate if gpu_rate > 0 else math.inf
    return seconds + PROMPT_OVERHEAD_PER_LAYER_S * cost.n_layers / batch


# -- fitting -------------------------------------------------------------------------------------


def _grid_fit_2d(obs: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """ln k_w, ln k_over minimising sum (ln y - ln(k_w x + k_o o))^2 + prior pull."""

    def loss(a: float, b: float) -> float:
        km, ko = math.exp(a), math.exp(b)
        total = PRIOR_WEIGHT * (a * a + b * b)
        for y, x, o in obs:
            total += (math.log(y) - math.log(km * x + ko * o)) ** 2
        return total

    best = (0.0, 0.0)
    best_loss = loss(0.0, 0.0)
    for step, span in ((0.1, 25), (0.01, 10)):
        ca, cb = best
        for i in range(-span, span + 1):
            for j in range(-span, span + 1):
                a, b = ca + i * step, cb + j * step
                value = loss(a, b)
                if value < best_loss:
                    best, best_loss = (a, b), value
    return best


def _grid_fit_1d(obs: Sequence[tuple[float, float, float]]) -> float:
    """ln k for y = k x + o (prompt: compute scaled, overhead fixed)."""

    def loss(a: float) -> float:
        k = math.exp(a)
        return PRIOR_WEIGHT * a * a + sum((math.log(y) - math.log(k * x + o)) ** 2
                                          for y, x, o in obs)

    best, best_loss = 0.0, loss(0.0)
    for step, span in ((0.05, 50), (0.005, 10)):
        centre = best
        for i in range(-span, span + 1):
            a = centre + i * step
            value = loss(a)
            if value < best_loss:
                best, best_loss = a, value
    return best


def _position(run: Run) -> float:
    return run.prompt_tokens + run.generated_tokens / 2


def runs_by_model(runs: Iterable[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    return {k: sorted(v, key=lambda r: r.at)[-RUNS_PER_MODEL:] for k, v in groups.items()}


def fit_runs(runs: Sequence[Run], machine: MachineSpeed, *, gpu: bool = False) -> Fitted:
    """The multipliers that make the physical model match ``runs`` best (one vote a model)."""
    gen_obs: list[tuple[float, float, float]] = []
    prompt_obs: list[tuple[float, float, float]] = []
    for group in runs_by_model(r for r in runs if _on_gpu(r, machine) == gpu).values():
        cost = _cost_of(group[-1])
        share = group[-1].gpu_layer_share if gpu else 0.0
        gens = [1 / r.gen_tok_s for r in group if r.gen_tok_s > 0]
        if gens:
            y = statistics.median(gens)
            x = _weights_time(cost, machine, statistics.median(_position(r) for r in group),
                              share)
            gen_obs.append((y, x, _overhead_time(cost, share)))
        prompts = [1 / r.prompt_tok_s for r in group
                   if r.prompt_tok_s > 0 and r.evaluated_prompt_tokens >= MIN_PROMPT_EVALUATED]
        if prompts:
            batch = min(512, statistics.median(
                r.evaluated_prompt_tokens for r in group
                if r.prompt_tok_s > 0 and r.evaluated_prompt_tokens >= MIN_PROMPT_EVALUATED))
            flops = _prompt_time(cost, machine, share, batch=10**9)
            over = _prompt_time(cost, machine, share, batch=int(batch)) - flops
            prompt_obs.append((statistics.median(prompts), flops, over))
    usable = [o for o in gen_obs if all(math.isfinite(v) and v > 0 for v in o)]
    a, b = _grid_fit_2d(usable) if usable else (0.0, 0.0)
    usable_p = [o for o in prompt_obs if o[0] > 0 and math.isfinite(o[1]) and o[1] > 0]
    c = _grid_fit_1d(usable_p) if usable_p else 0.0
    return Fitted(math.exp(a), math.exp(b), math.exp(c), len(usable), len(usable_p))


def _on_gpu(run: Run, machine: MachineSpeed) -> bool:
    """A run with layers on a GPU; a build that only says it could offload (an RPC or GPU
    backend) on a machine with no GPU ran on the CPU."""
    return run.gpu_layer_share > 0 and machine.has_gpu


def _cost_of(run: Run) -> TokenCost:
    return TokenCost(run.read_bytes, run.kv_bytes_per_token, max(1, run.n_layers),
                     run.vocab_size, run.active_params)


# -- predicting ------------------------------------------------------------------------------------


class SpeedModel:
    """Predicts generation and prompt speed for any model shape on one machine."""

    def __init__(self, machine: MachineSpeed, runs: Sequence[Run] = ()) -> None:
        self.machine = machine
        self.runs = tuple(runs)
        self._lock = threading.Lock()
        self._fits: dict[bool, Fitted] = {}

    def fitted(self, *, gpu: bool = False) -> Fitted:
        with self._lock:
            if gpu not in self._fits:
                self._fits[gpu] = fit_runs(self.runs, self.machine, gpu=gpu)
            return self._fits[gpu]

    def predict(
        self,
        shape: ModelShape,
        *,
        n_gpu_layers: int = 0,
        key: str | None = None,
        context_tokens: int = DEFAULT_CONTEXT,
    ) -> SpeedPrediction:
        """Tokens per second for ``shape`` with ``n_gpu_layers`` on the GPU (-1: all).

        ``key`` (``model_key(path)``) lets the model's own measured runs count.
        """
        cost = TokenCost.of(shape)
        layers = shape.n_layers
        on_gpu = 0 if not self.machine.has_gpu else (
            layers if n_gpu_layers < 0 else min(n_gpu_layers, layers))
        share = on_gpu / layers if layers else 0.0
        fit = self.fitted(gpu=share > 0)
        mem = _weights_time(cost, self.machine, context_tokens, share)
        over = _overhead_time(cost, share)
        t_gen = fit.k_mem * mem + fit.k_over * over
        flops = _prompt_time(cost, self.machine, share, batch=10**9)
        t_prompt = fit.k_flops * flops + (_prompt_time(cost, self.machine, share) - flops)
        tok_s = 1 / t_gen if t_gen > 0 and math.isfinite(t_gen) else 0.0
        prompt_tok_s = 1 / t_prompt if t_prompt > 0 and math.isfinite(t_prompt) else 0.0
        basis = _basis(fit)
        own = [r for r in self.runs if key is not None and r.key == key
               and _on_gpu(r, self.machine) == (share > 0)]
        own = sorted(own, key=lambda r: r.at)[-RUNS_PER_MODEL:]
        gens = [r.gen_tok_s for r in own if r.gen_tok_s > 0]
        if gens and tok_s > 0:
            w = len(gens) / (len(gens) + 0.5)
            tok_s = math.exp(w * math.log(statistics.median(gens)) + (1 - w) * math.log(tok_s))
            basis = n_("{count} measured run of this model",
                       "{count} measured runs of this model", len(gens))
        prompts = [r.prompt_tok_s for r in own
                   if r.prompt_tok_s > 0 and r.evaluated_prompt_tokens >= MIN_PROMPT_EVALUATED]
        if prompts and prompt_tok_s > 0:
            w = len(prompts) / (len(prompts) + 0.5)
            prompt_tok_s = math.exp(w * math.log(statistics.median(prompts))
                                    + (1 - w) * math.log(prompt_tok_s))
        share_mem = fit.k_mem * mem / t_gen if t_gen > 0 and math.isfinite(t_gen) else 0.0
        return SpeedPrediction(tok_s, prompt_tok_s, on_gpu, basis, len(gens), share_mem)


def _basis(fit: Fitted) -> str:
    if not fit.models:
        return _("physical model (measured bandwidth and compute, no runs yet)")
    return n_("calibrated from {count} model run here",
              "calibrated from {count} models run here", fit.models)
