"""The system sampler against the real machine: RAM, CPU, own RSS, a watched worker's RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from tui.monitor import MonitorSnapshot, Sampler


def test_snapshot_reports_the_machine_and_this_process() -> None:
    sampler = Sampler(gpu_sources=[])
    snap = sampler.sample()
    assert isinstance(snap, MonitorSnapshot)
    vm = psutil.virtual_memory()
    assert snap.ram_total == vm.total
    assert 0 < snap.ram_available <= snap.ram_total
    assert snap.ram_used + snap.ram_available == snap.ram_total
    assert 0.0 <= snap.cpu_percent <= 100.0
    own = psutil.Process().memory_info().rss
    assert abs(snap.app_rss - own) < 32 << 20
    assert snap.gpus == () and snap.gpu_status.startswith("no GPU")
    with pytest.raises(AttributeError):
        snap.ram_total = 1  # type: ignore[misc]  # frozen


def test_a_watched_process_shows_its_own_rss_and_goes_dead_when_it_exits() -> None:
    code = "import sys,time; b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096]); " \
           "print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = Sampler(gpu_sources=[])
        sampler.watch(child.pid, "model")
        snap = sampler.sample()
        worker = snap.worker(child.pid)
        assert worker is not None and worker.alive and worker.label == "model"
        assert worker.rss_bytes >= 80 << 20
        assert snap.models_rss == worker.rss_bytes
        # the child's memory is not counted as ours: ours is this process's own RSS
        assert abs(snap.app_rss - psutil.Process().memory_info().rss) < 32 << 20
        child.kill()
        child.wait()
        dead = sampler.sample().worker(child.pid)
        assert dead is not None and not dead.alive and dead.rss_bytes == 0
        sampler.unwatch(child.pid)
        assert sampler.sample().workers == ()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_watching_a_pid_that_does_not_exist_is_reported_not_raised() -> None:
    sampler = Sampler(gpu_sources=[])
    sampler.watch(2**22 + 12345)
    (w,) = sampler.sample().workers
    assert not w.alive


def test_idle_sampling_costs_under_one_percent_of_a_core_at_1hz() -> None:
    sampler = Sampler()  # the real default sources: NVML, which says "no GPU" here
    sampler.sample()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for _ in range(60):
        sampler.sample()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    print(f"\n60 samples: {cpu * 1000:.1f} ms CPU, {wall * 1000:.1f} ms wall "
          f"({cpu / 60 * 1000:.2f} ms per sample = {cpu / 60 * 100:.3f}% of a core at 1 Hz)")
    assert cpu < 0.6, "60 samples must cost under 1% of a core over a minute"


def test_core_packages_import_without_textual() -> None:
    code = (
        "import sys, tui.monitor, tui.models.listing, tui.models.fit, tui.models.catalogue, "
        "tui.models.download, tui.models.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
