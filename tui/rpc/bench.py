"""``lmdesk bench rpc``: the same model and greedy prompt loaded here, on one loopback
``lmdesk rpc-worker`` and split over two, with the load time, the generation tokens/s, their
ratios to the local run, and the split estimate's predicted tokens/s beside the measured.

On loopback the workers share this machine's cores with the model worker, so the ratios
measure what RPC itself costs (serialising graphs, round trips through the gate), not what a
second machine would add.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams

PROMPT = [ChatMessage("user", "Write a short story about a lighthouse keeper.")]


@dataclass(frozen=True)
class RpcRun:
    label: str
    workers: int
    load_s: float
    gen_tok_s: float
    prompt_tok_s: float
    predicted_tok_s: float = 0.0


class LoopbackWorker:
    """``lmdesk rpc-worker`` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, mem_gib: float) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "rpc-worker", "--port", str(self.port),
             "--mem", str(mem_gib)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.lstrip().startswith("use it from"):
                break
        else:
            raise RuntimeError("the rpc-worker did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _run(label: str, params: LoadParams, reps: int, max_tokens: int) -> RpcRun:
    from tui.engine.local import LocalEngine

    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=1, ignore_eos=True)
    gens: list[float] = []
    prompts: list[float] = []
    started = time.perf_counter()
    with LocalEngine(params) as engine:
        load_s = time.perf_counter() - started
        for _ in range(reps):
            done = list(engine.generate(PROMPT, sampling))[-1]
            if not isinstance(done, Done) or done.error:
                raise RuntimeError(f"{label}: {getattr(done, 'error', done)}")
            gens.append(done.stats.generation_tokens_per_s)
            prompts.append(done.stats.prompt_tokens_per_s)
    return RpcRun(label, len(params.rpc_servers), load_s, statistics.median(gens),
                  statistics.median(prompts))


def _predicted(model_path: str, addresses: Sequence[str], local_tok_s: float) -> float:
    from tui.models.fit import Resources, shape_of
    from tui.models.split import estimate_split
    from tui.rpc.probe import probe

    statuses = [probe(a, measure=True) for a in addresses]
    split = estimate_split(shape_of(model_path), statuses, Resources.current(),
                           local_tok_s=local_tok_s, n_ctx=1024)
    return split.predicted_tok_s


def run_rpc_bench(params: LoadParams, *, reps: int = 3, max_tokens: int = 64,
                  mem_gib: float = 2.0) -> list[RpcRun]:
    """Local, one worker, two workers; prints a table and the ratios to the local run."""
    import os
    from dataclasses import replace

    base = replace(params, n_ctx=params.n_ctx or 1024, rpc_servers=())
    print(f"lmdesk bench rpc: {os.path.basename(base.model_path)}, {reps} replies of "
          f"{max_tokens} tokens each, greedy; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    runs = [_run("local", base, reps, max_tokens)]
    workers = [LoopbackWorker(mem_gib), LoopbackWorker(mem_gib)]
    try:
        for n in (1, 2):
            addresses = tuple(w.address for w in workers[:n])
            run = _run(f"{n} worker{'s' if n > 1 else ''}",
                       replace(base, rpc_servers=addresses), reps, max_tokens)
            runs.append(replace(run, predicted_tok_s=_predicted(
                base.model_path, addresses, runs[0].gen_tok_s)))
    finally:
        for w in workers:
            w.stop()
    local = runs[0]
    print(f"{'run':10} {'load s':>7} {'gen tok/s':>10} {'prompt tok/s':>13} {'gen/local':>10} "
          f"{'load/local':>11} {'predicted/measured':>19}")
    for r in runs:
        ratio = r.gen_tok_s / local.gen_tok_s if local.gen_tok_s else 0.0
        load = r.load_s / local.load_s if local.load_s else 0.0
        pm = f"{r.predicted_tok_s / r.gen_tok_s:.2f}" if r.predicted_tok_s and r.gen_tok_s \
            else "-"
        print(f"{r.label:10} {r.load_s:7.2f} {r.gen_tok_s:10.1f} {r.prompt_tok_s:13.0f} "
              f"{ratio:10.2f} {load:11.2f} {pm:>19}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return runs
