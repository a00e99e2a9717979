"""A model spread over ``lmdesk rpc-worker``s: how llama.cpp would split its layers, what each
worker and this machine would hold, and what the network costs per token.

Pure functions of their inputs (the workers' status, with the round trip and bandwidth
measured by ``tui.rpc.probe``, this machine's resources and speed), so the CLI, the app and
the tests can call them with any set of workers.

The split follows llama.cpp (``llama_model::load_tensors``): with every layer offloaded
(``n_gpu_layers`` -1, what lmdesk loads a split model with) and ``tensor_split`` in proportion
to the memory each worker offers (``tui.engine.rpc``), layer ``i`` of ``n`` goes to the first
worker whose cumulative share exceeds ``i / (n + 1)``; the output layer counts as layer ``n``
(the last worker, as a rule). The token embeddings stay here. Each worker holds its layers'
weights, their part of the KV cache and a compute buffer.

The speed: a token costs what it costs on this machine (the workers are assumed to compute as
fast as it does; on loopback they are it) plus, per worker, a few round trips (the hidden
state sent, the graph run, the result read) and the bytes of the graph and activations; the
last worker sends the logits back.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.models.choice import READING_SPEED, combined_verdict
from tui.models.fit import (
    LOAD_FIXED_BYTES,
    PER_MERGE_BYTES,
    PER_VOCAB_BYTES,
    RUNTIME_BYTES,
    ModelShape,
    Resources,
    Verdict,
)
from tui.rpc.probe import WorkerStatus

MiB = 1 << 20
ROUND_TRIPS_PER_TOKEN = 3
"""Per worker and token: the hidden state in, the graph run, the result out."""
GRAPH_BYTES_PER_LAYER = 16 * 1024
"""The serialized graph llama.cpp sends with each run (about 30 nodes a layer)."""
WORKER_MARGIN = 0.9
"""A worker whose share is above this part of what it offers is tight (amber)."""


@dataclass(frozen=True)
class WorkerShare:
    address: str
    reachable: bool
    error: str
    offered_bytes: int
    layers: tuple[int, ...]
    """The layer indices it takes (``n_layers`` is the output layer)."""
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    rtt_ms: float | None
    bandwidth_mb_s: float | None

    @property
    def need_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes

    @property
    def fits(self) -> bool:
        return self.reachable and self.need_bytes <= self.offered_bytes

    def layer_range(self) -> str:
        if not self.layers:
            return "no layers"
        first, last = self.layers[0], self.layers[-1]
        return f"layer {first}" if first == last else f"layers {first}-{last}"

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address, "reachable": self.reachable, "error": self.error,
            "offered_bytes": self.offered_bytes, "n_layers": len(self.layers),
            "layers": list(self.layers), "need_bytes": self.need_bytes,
            "weights_bytes": self.weights_bytes, "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes, "fits": self.fits,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "bandwidth_mb_s": None if self.bandwidth_mb_s is None
            else round(self.bandwidth_mb_s, 1),
        }


@dataclass(frozen=True)
class SplitEstimate:
    model: str
    n_ctx: int
    workers: tuple[WorkerShare, ...]
    local_bytes: int
    """What stays on this machine: the runtime, the token embeddings, tokenizer and buffers."""
    ram_available: int
    verdict: Verdict
    """Memory and speed together, as for a model here (``tui.models.choice``)."""
    memory_verdict: Verdict
    local_tok_s: float
    """The prediction for this machine alone (the compute part of a token)."""
    network_ms_per_token: float
    predicted_tok_s: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "n_ctx": self.n_ctx, "verdict": self.verdict,
            "memory_verdict": self.memory_verdict, "reason": self.reason,
            "local_bytes": self.local_bytes,
            "ram_available": self.ram_available,
            "local_tok_s": round(self.local_tok_s, 2),
            "network_ms_per_token": round(self.network_ms_per_token, 3),
            "predicted_tok_s": round(self.predicted_tok_s, 2),
            "workers": [w.to_json() for w in self.workers],
        }

    def lines(self) -> list[str]:
        out = [f"split over {len(self.workers)} RPC worker(s): {self.verdict}: {self.reason}"]
        for w in self.workers:
            if not w.reachable:
                out.append(f"  {w.address}: not reachable: {w.error}")
                continue
            net = ""
            if w.rtt_ms is not None and w.bandwidth_mb_s is not None:
                net = f"; round trip {w.rtt_ms:.2f} ms, {w.bandwidth_mb_s:.0f} MB/s"
            out.append(f"  {w.address}: {w.layer_range()} ({len(w.layers)}), needs "
                       f"{_fmt(w.need_bytes)} of {_fmt(w.offered_bytes)} offered{net}")
        out.append(f"  this machine: {_fmt(self.local_bytes)} (embeddings, tokenizer, runtime) "
                   f"of {_fmt(self.ram_available)} available")
        out.append(f"  speed: about {self.predicted_tok_s:.1f} tok/s ({self.local_tok_s:.1f} "
                   f"computing, plus {self.network_ms_per_token:.1f} ms of network a token)")
        return out


def _fmt(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MiB:.0f} MiB"


def layer_split(n_layers: int, shares: Sequence[float]) -> list[list[int]]:
    """The layers (0..n_layers, the last being the output layer) each device takes, as
    llama.cpp assigns them for ``tensor_split`` = ``shares``."""
    total = sum(shares)
    if not shares or total <= 0:
        return [[] for _ in shares]
    cumulative = []
    running = 0.0
    for share in shares:
        running += share / total
        cumulative.append(running)
    out: list[list[int]] = [[] for _ in shares]
    for layer in range(n_layers + 1):
        at = bisect.bisect_right(cumulative, layer / (n_layers + 1))
        out[min(at, len(shares) - 1)].append(layer)
    return out


def estimate_split(shape: ModelShape, workers: Sequence[WorkerStatus], resources: Resources,
                   *, local_tok_s: float, n_ctx: int, n_ubatch: int = 512,
                   reading_speed: float = READING_SPEED) -> SplitEstimate:
    """What loading ``shape`` over ``workers`` would cost and how fast it would write."""
    reachable = [w for w in workers if w.reachable]
    parts = layer_split(shape.n_layers, [w.offered_bytes for w in reachable])
    by_address = {w.address: p for w, p in zip(reachable, parts, strict=True)}
    batch = min(n_ctx, n_ubatch)
    compute = shape.compute_bytes(batch, -(-batch // 256) * 256)
    head_bytes = max(0, shape.weights_bytes - shape.layer_bytes * shape.n_layers)
    output_bytes = head_bytes // 2  # the output matrix (a copy of the embeddings when tied)
    shares: list[WorkerShare] = []
    for w in workers:
        layers = tuple(by_address.get(w.address, ()))
        blocks = [i for i in layers if i < shape.n_layers]
        weights = shape.layer_bytes * len(blocks)
        if shape.n_layers in layers:
            weights += output_bytes
        kv = shape.kv_bytes(n_ctx, layers=len(blocks)) if blocks else 0
        shares.append(WorkerShare(
            w.address, w.reachable, w.error, w.offered_bytes, layers, weights, kv,
            compute if layers else 0, w.rtt_ms, w.bandwidth_mb_s))
    embeddings = head_bytes - output_bytes
    local = (RUNTIME_BYTES + LOAD_FIXED_BYTES + PER_VOCAB_BYTES * shape.vocab_size
             + PER_MERGE_BYTES * shape.n_merges + embeddings)
    network_s = 0.0
    used = [s for s in shares if s.layers]
    for i, s in enumerate(used):
        rtt = (s.rtt_ms or 0.0) / 1000
        bandwidth = (s.bandwidth_mb_s or 1000.0) * 1e6
        sent = GRAPH_BYTES_PER_LAYER * len(s.layers) + 2 * 4 * shape.embedding_length
        if i == len(used) - 1:
            sent += 4 * shape.vocab_size  # the logits come back from the last one
        network_s += ROUND_TRIPS_PER_TOKEN * rtt + sent / bandwidth
    compute_s = 1 / local_tok_s if local_tok_s > 0 else 0.0
    tok_s = 1 / (compute_s + network_s) if compute_s + network_s > 0 else 0.0
    memory, reason = _verdict(shares, local, resources)
    verdict = combined_verdict(memory, tok_s, reading_speed)
    if verdict != memory:
        reason += f", but about {tok_s:.1f} tok/s is slower than reading speed ({reading_speed:g})"
    return SplitEstimate(shape.name, n_ctx, tuple(shares), local, resources.ram_available,
                         verdict, memory, local_tok_s, network_s * 1000, tok_s, reason)


def _verdict(shares: Sequence[WorkerShare], local: int,
             resources: Resources) -> tuple[Verdict, str]:
    down = [s.address for s in shares if not s.reachable]
    if down:
        return "red", f"not reachable: {', '.join(down)}"
    if not shares:
        return "red", "no RPC worker given"
    over = [s for s in shares if s.need_bytes > s.offered_bytes]
    if over:
        s = over[0]
        return "red", (f"{s.address} would need {_fmt(s.need_bytes)} but offers "
                       f"{_fmt(s.offered_bytes)}: give it more (--mem) or add a worker")
    if local > resources.ram_available:
        return "red", (f"this machine would need {_fmt(local)} but has "
                       f"{_fmt(resources.ram_available)} available")
    tight = [s for s in shares if s.need_bytes > WORKER_MARGIN * s.offered_bytes]
    if tight:
        return "amber", (f"tight on {tight[0].address}: {_fmt(tight[0].need_bytes)} of "
                         f"{_fmt(tight[0].offered_bytes)} offered")
    total = sum(s.need_bytes for s in shares)
    offered = sum(s.offered_bytes for s in shares)
    return "green", (f"fits: {_fmt(total)} on the workers ({_fmt(offered)} offered), "
                     f"{_fmt(local)} here")


def judge_split(model_path: str, addresses: Sequence[str], *, data_dir: Path | None,
                n_ctx: int | None = None, reading_speed: float = READING_SPEED,
                resources: Resources | None = None) -> SplitEstimate:
    """Ask each worker how it is (memory, round trip, bandwidth: ``tui.rpc.probe``) and judge
    ``model_path`` spread over them. Blocking (a second or so a worker); ``GGUFError`` for an
    unreadable file."""
    from tui.models.calibration import speed_model
    from tui.models.choice import assess
    from tui.models.fit import shape_of
    from tui.models.speed import model_key
    from tui.rpc.probe import probe

    shape = shape_of(model_path)
    res = resources if resources is not None else Resources.current()
    here = assess(shape, res, speed_model(data_dir), n_ctx=n_ctx, n_gpu_layers=0,
                  key=model_key(model_path), reading_speed=reading_speed)
    statuses = [probe(address, measure=True) for address in addresses]
    # the workers are taken to compute as fast as this machine does (on loopback they are it)
    return estimate_split(shape, statuses, res, local_tok_s=here.speed.tok_s,
                          n_ctx=here.context.n_ctx, reading_speed=reading_speed)
