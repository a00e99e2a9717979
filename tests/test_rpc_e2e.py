"""One model spread over two real ``lmdesk rpc-worker`` processes on loopback: both take
layers, the real SmolLM2 answers, and losing a worker mid-reply is one line (``ask``), a
notification (the app, which stays up), and the model loads again without it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_fixtures import (
    FakeSampler,
    chat,
    make_paths,
    notifications,
    pilot_test,
    send,
    wait_for,
    wait_idle,
)
from tests.test_rpc_worker import Worker
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams, TextDelta
from tui.rpc.probe import WorkerStatus, probe

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GREEDY = SamplingParams(temperature=0.0, max_tokens=12, seed=1)
LONG = SamplingParams(temperature=0.0, max_tokens=400, seed=1)
COUNT = "Count from 1 to 500, one number per line."


@pytest.fixture
def workers() -> Iterator[tuple[Worker, Worker]]:
    pair = (Worker("--mem", "1"), Worker("--mem", "1"))
    yield pair
    for worker in pair:
        worker.stop()


def _held(before: WorkerStatus, worker: Worker) -> int:
    now = probe(worker.address)
    assert now.reachable, now.error
    return now.used_bytes - before.used_bytes


def _lmdesk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=dict(os.environ))


def _one_error_line(returncode: int, stderr: str) -> str:
    assert returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("lmdesk: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_two_workers_share_the_model_and_losing_one_is_one_line(
        smollm: Path, workers: tuple[Worker, Worker], tmp_path: Path) -> None:
    first, second = workers
    before = [probe(w.address) for w in workers]
    assert all(s.reachable and not s.busy for s in before), before
    engine = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512,
                                    rpc_servers=(first.address, second.address)),
                         log_path=tmp_path / "worker.log")
    try:
        engine.load()
        done = list(engine.generate([ChatMessage("user", "Name three colours.")], GREEDY))[-1]
        assert isinstance(done, Done) and done.error is None, done
        assert done.text.strip() and done.stats.generated_tokens > 0
        # both workers received layers: the memory their llama.cpp servers hold grew
        held = [_held(b, w) for b, w in zip(before, workers, strict=True)]
        assert all(h > 20 * MiB for h in held), [h / MiB for h in held]
        # a worker serves one model: another lmdesk asking for it is told so in one line
        busy = _lmdesk("ask", "--rpc", first.address, "--max-tokens", "4", "hi")
        line = _one_error_line(busy.returncode, busy.stderr)
        assert f"the RPC worker {first.address} already serves another model" in line
        # one worker goes away mid-reply
        events = engine.generate([ChatMessage("user", COUNT)], LONG)
        texts = 0
        for event in events:
            if isinstance(event, TextDelta):
                texts += 1
                if texts == 3:
                    first.proc.kill()
            if isinstance(event, Done):
                done = event
        assert texts >= 3 and done.error is not None, done
        assert f"the RPC worker {first.address} stopped answering mid-reply" in done.error
        assert "\n" not in done.error and "load the model again without it" in done.error
        assert not engine.alive
    finally:
        engine.unload()
    # and the model loads again without it, on the worker left
    with LocalEngine(LoadParams(model_path=str(smollm), n_ctx=512,
                                rpc_servers=(second.address,))) as again:
        done = list(again.generate([ChatMessage("user", "Name three colours.")], GREEDY))[-1]
        assert isinstance(done, Done) and done.error is None and done.text.strip(), done


def test_ask_ends_with_one_line_when_a_worker_is_killed_mid_reply(
        smollm: Path, workers: tuple[Worker, Worker]) -> None:
    first, second = workers
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "ask", "--model", str(smollm), "--n-ctx", "512",
         "--rpc", f"{first.address},{second.address}", "--temperature", "0",
         "--max-tokens", "400", COUNT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        answer = proc.stdout.read(4)  # the reply has begun on both workers
        assert answer.strip(), "".join(stderr)
        second.proc.kill()
        answer += proc.stdout.read()
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    line = _one_error_line(code, "".join(stderr))
    assert f"the RPC worker {second.address} stopped answering mid-reply" in line
    assert answer.strip()  # what was written before stays printed


@pilot_test
async def test_the_app_stays_up_when_a_worker_goes_mid_reply(
        smollm: Path, workers: tuple[Worker, Worker], tmp_path: Path) -> None:
    from tui.app.app import LmdeskApp
    from tui.config import Settings
    from tui.engine.base import Engine
    from tui.models.profiles import ProfileLibrary
    from tui.store import Store

    first, second = workers
    paths = make_paths(tmp_path)
    store = Store.open(paths.data_dir)
    library = ProfileLibrary(store)
    profile = library.create("split", str(smollm), n_ctx=512, sampling={"temperature": 0},
                             rpc=(first.address, second.address))

    def factory(params: LoadParams) -> Engine:
        return LocalEngine(params, log_path=tmp_path / "worker.log")

    app = LmdeskApp(settings=Settings(max_tokens=400, n_ctx=512), paths=paths, store=store,
                    engine_factory=factory, model_path=str(smollm), model_name="smollm2-135m",
                    show_welcome=False)
    app.sampler = FakeSampler()  # type: ignore[assignment]
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: app.model_state == "ready", timeout=120)
            assert app.use_profile(profile)
            await wait_for(pilot, lambda: app.model_state == "ready"
                           and app.profile is not None, timeout=120)
            assert app.current is not None
            assert app.current.model.params is not None
            assert app.current.model.params.rpc_servers == (first.address, second.address)
            await send(pilot, COUNT, wait=False)
            pane = chat(app).pane
            await wait_for(pilot, lambda: pane.job is not None and pane.job.tokens_shown > 2,
                           timeout=120)
            first.proc.kill()
            await wait_idle(pilot, timeout=120)
            failed = [m for s, m in notifications(app) if s == "error"]
            assert any(f"the RPC worker {first.address} stopped answering" in m
                       for m in failed), notifications(app)
            assert app.is_running and "Traceback" not in "".join(failed)
            # the profile without the lost worker loads and answers
            profile = library.update(profile.id, rpc=(second.address,))
            assert app.use_profile(profile)
            await wait_for(pilot, lambda: app.model_state == "ready" and app.current is not None
                           and app.current.engine.alive, timeout=120)
            await send(pilot, "Name three colours.", wait=False)
            await wait_idle(pilot, timeout=120)
            messages = store.messages(chat(app).meta.id)
            assert messages[-1].role == "assistant" and messages[-1].content.strip()
            assert messages[-1].status != "error", messages[-1]
    finally:
        app.session.close()
        store.close()

