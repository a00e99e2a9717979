"""Models generating at once split the cores: the shared count of generating workers, across
processes, and two real engines on SmolLM2."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tui.engine.cores import CoreShare, share_of
from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams, TextDelta


def test_the_generating_workers_are_counted_and_share_their_threads(tmp_path: Path) -> None:
    a, b = CoreShare(tmp_path, "a"), CoreShare(tmp_path, "b")
    assert a.active() == 1  # alone (even before it starts)
    a.begin()
    assert a.active() == b.active() == 1
    b.begin()
    assert a.active() == b.active() == 2
    b.end()
    assert a.active() == 1
    a.end()
    assert list(tmp_path.glob("*")) == []
    assert [share_of(2, n) for n in (1, 2, 3)] == [2, 1, 1]
    assert share_of(8, 3) == 2


def test_a_worker_in_another_process_counts_until_it_goes(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from tui.engine.cores import CoreShare;"
            "s = CoreShare(Path(sys.argv[1]), 'other'); s.begin(); print('held', flush=True);"
            "time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        me = CoreShare(tmp_path, "me")
        me.begin()
        assert me.active() == 2
    finally:
        other.kill()
        other.wait()
    assert me.active() == 1  # a dead worker's lock went with it
    me.end()


@pytest.mark.timeout(900)
def test_two_models_generating_at_once_split_the_threads(smollm: Path, tmp_path: Path) -> None:
    def engine() -> LocalEngine:
        e = LocalEngine(LoadParams(model_path=str(smollm), n_ctx=1024, n_threads=2,
                                   n_threads_batch=2, share_cores_dir=str(tmp_path)))
        e.load()
        return e

    first, second = engine(), engine()
    try:
        started = threading.Event()
        long_done: list[Done] = []

        def long_reply() -> None:
            sampling = SamplingParams(max_tokens=3000, seed=3, ignore_eos=True)
            for event in first.generate([ChatMessage("user", "Tell a long story.")], sampling):
                if isinstance(event, TextDelta):
                    started.set()
                if isinstance(event, Done):
                    long_done.append(event)

        runner = threading.Thread(target=long_reply)
        runner.start()
        assert started.wait(300)
        sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=24, seed=1)
        beside = list(second.generate([ChatMessage("user", "Name a colour.")], sampling))[-1]
        first.cancel()
        runner.join(120)
        assert isinstance(beside, Done) and beside.error is None
        assert beside.stats.n_threads == 1  # one of two generating: half of its 2 threads
        time.sleep(0.2)
        alone = list(second.generate([ChatMessage("user", "Name a colour.")], sampling))[-1]
        assert isinstance(alone, Done) and alone.stats.n_threads == 2
        assert alone.text.strip() and beside.text.strip()
    finally:
        first.unload()
        second.unload()
