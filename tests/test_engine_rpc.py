"""LoadParams.rpc_servers: a model's layers on an ``lmdesk rpc-worker`` (here on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_rpc_worker import Worker, free_port
from tui.engine.errors import ModelLoadError
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams
from tui.rpc.probe import probe

GREEDY = SamplingParams(temperature=0.0, max_tokens=16, seed=1)
HI = [ChatMessage("user", "Name three colours.")]


@pytest.fixture
def rpc_worker() -> Iterator[Worker]:
    worker = Worker("--mem", "2")
    yield worker
    worker.stop()


def _reply(engine: LocalEngine) -> Done:
    done = list(engine.generate(HI, GREEDY))[-1]
    assert isinstance(done, Done) and done.error is None, done
    return done


def test_a_model_runs_on_an_rpc_worker(smollm: Path, rpc_worker: Worker) -> None:
    before = probe(rpc_worker.address)
    assert before.reachable and not before.busy, before.error
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512,
                                    rpc_servers=(rpc_worker.address,)))
    try:
        info = engine.load()
        assert info.n_gpu_layers == -1 and not info.gpu_backend
        on_rpc = _reply(engine)
        now = probe(rpc_worker.address)
        assert now.busy  # the model's worker holds the connection
        held = now.used_bytes - before.used_bytes
        assert held > 50 * 2**20, f"the RPC worker holds only {held / 2**20:.0f} MiB"
    finally:
        engine.unload()
    with LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512)) as local:
        assert _reply(local).text == on_rpc.text  # the same CPU kernels, over the wire


def test_an_unreachable_rpc_worker_is_one_clear_line(smollm: Path) -> None:
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512,
                                    rpc_servers=(f"127.0.0.1:{free_port()}",)))
    with pytest.raises(ModelLoadError) as caught:
        engine.load()
    message = str(caught.value)
    assert "RPC worker not usable" in message and "rpc-worker" in message
    assert "\n" not in message and "damaged" not in message
    assert not engine.alive
