"""A model spread over RPC workers (tui/models/split.py): the layer split, the workers' memory
counted, the network in the speed, and ``lmdesk models info --rpc`` against a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tests.test_rpc_worker import Worker, free_port
from tui.models.fit import ModelShape, Resources, estimate_fit, shape_of
from tui.models.split import estimate_split, layer_split
from tui.rpc.probe import WorkerStatus

GiB = 1 << 30
MiB = 1 << 20


def _worker(address: str, offered: int, rtt: float = 0.2, bandwidth: float = 1000.0,
            ) -> WorkerStatus:
    return WorkerStatus(address, True, offered_bytes=offered, used_bytes=50 * MiB,
                        backend="CPU", rtt_ms=rtt, bandwidth_mb_s=bandwidth)


def _big(smollm: Path) -> ModelShape:
    """SmolLM2's shape scaled to a 7 GiB model: too big for a 4 GiB machine."""
    shape = shape_of(smollm)
    scale = 7 * GiB // shape.weights_bytes
    return replace(shape, name="big", weights_bytes=shape.weights_bytes * scale,
                   layer_bytes=shape.layer_bytes * scale)


def test_layers_are_split_as_llama_cpp_does() -> None:
    assert layer_split(30, [1, 1]) == [list(range(16)), list(range(16, 31))]
    split = layer_split(30, [3, 1])
    assert len(split[0]) == 24 and len(split[1]) == 7 and split[1][-1] == 30
    assert layer_split(4, [1]) == [[0, 1, 2, 3, 4]]
    assert layer_split(4, [1, 0]) == [[0, 1, 2, 3, 4], []]


def test_the_fit_counts_the_workers_memory(smollm: Path) -> None:
    shape = _big(smollm)
    small_machine = Resources(ram_available=4 * GiB, ram_total=8 * GiB)
    assert estimate_fit(shape, n_ctx=2048, resources=small_machine).verdict == "red"
    workers = [_worker("10.0.0.2:50052", 5 * GiB), _worker("10.0.0.3:50052", 5 * GiB)]
    split = estimate_split(shape, workers, small_machine, local_tok_s=20.0, n_ctx=2048)
    assert split.memory_verdict == "green", split.reason
    a, b = split.workers
    assert len(a.layers) + len(b.layers) == shape.n_layers + 1  # the output layer too
    assert a.need_bytes > 2 * GiB and b.need_bytes > 2 * GiB
    assert a.need_bytes + b.need_bytes + split.local_bytes > shape.weights_bytes
    # here: the token embeddings and the runtime, not the layers
    assert split.local_bytes < 1.5 * GiB < small_machine.ram_available
    # one worker offering too little: red, and named
    workers[1] = _worker("10.0.0.3:50052", 2 * GiB)
    split = estimate_split(shape, workers, small_machine, local_tok_s=20.0, n_ctx=2048)
    assert split.verdict == "red" and "10.0.0.3:50052" in split.reason
    assert split.workers[1].need_bytes > split.workers[1].offered_bytes
    # layers follow the memory offered: the bigger worker takes more
    workers = [_worker("a:1", 6 * GiB), _worker("b:1", 3 * GiB)]
    split = estimate_split(shape, workers, small_machine, local_tok_s=20.0, n_ctx=2048)
    assert len(split.workers[0].layers) > len(split.workers[1].layers)
    # an unreachable worker is no capacity at all
    down = WorkerStatus("c:1", False, "nothing listens at c:1")
    split = estimate_split(shape, [workers[0], down], small_machine, local_tok_s=20.0,
                           n_ctx=2048)
    assert split.verdict == "red" and "c:1" in split.reason
    assert not split.workers[1].layers


def test_the_network_slows_the_prediction(smollm: Path) -> None:
    shape = shape_of(smollm)
    here = Resources(ram_available=8 * GiB, ram_total=16 * GiB)
    fast = estimate_split(shape, [_worker("a:1", GiB, rtt=0.1, bandwidth=1000.0)], here,
                          local_tok_s=100.0, n_ctx=512)
    slow = estimate_split(shape, [_worker("a:1", GiB, rtt=5.0, bandwidth=10.0)], here,
                          local_tok_s=100.0, n_ctx=512)
    assert fast.predicted_tok_s < 100.0
    assert slow.predicted_tok_s < fast.predicted_tok_s / 2
    assert slow.network_ms_per_token > 15 * fast.network_ms_per_token / 2
    assert "round trip 5.00 ms, 10 MB/s" in "\n".join(slow.lines())


def test_models_info_judges_the_model_over_a_real_worker() -> None:
    worker = Worker("--mem", "1")
    down = f"127.0.0.1:{free_port()}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tui.cli", "models", "info", "smollm2-135m", "--n-ctx",
             "1024", "--rpc", f"{worker.address},{down}", "--json"],
            capture_output=True, text=True, timeout=120)
        text = subprocess.run(
            [sys.executable, "-m", "tui.cli", "models", "info", "smollm2-135m", "--n-ctx",
             "1024", "--rpc", worker.address], capture_output=True, text=True, timeout=120)
    finally:
        worker.stop()
    assert result.returncode == 0, result.stderr
    split = json.loads(result.stdout)["rpc_split"]
    up, gone = split["workers"]
    assert up["address"] == worker.address and up["reachable"]
    assert up["offered_bytes"] == GiB and up["n_layers"] == 31  # every layer and the output
    assert up["rtt_ms"] > 0 and up["bandwidth_mb_s"] > 0
    assert not gone["reachable"] and "rpc-worker" in gone["error"]
    assert split["verdict"] == "red" and down in split["reason"]
    assert text.returncode == 0, text.stderr
    assert f"{worker.address}: layers 0-30 (31), needs" in text.stdout
    assert "round trip" in text.stdout and "of network a token" in text.stdout
