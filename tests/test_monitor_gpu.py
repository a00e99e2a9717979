"""VRAM through NVML, with a fake pynvml injected: every call can fail and nothing else breaks."""

from __future__ import annotations

import os
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

import pytest

from tui.monitor import GpuSample, GpuSource, NvmlSource, Sampler

GiB = 1 << 30
NVML_CALLS = (
    "nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses",
)


class NVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs; this process holds 1 GiB on GPU 0, a stranger 3 GiB."""

    def __init__(self, fail: str | None = None, *, other_pid: int = 999_999) -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.shutdowns = 0
        self.other_pid = other_pid

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise NVMLError(f"{name} failed: Unknown Error")

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex")
        return i

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        self._call("nvmlDeviceGetName")
        return b"NVIDIA H100 80GB HBM3" if handle == 0 else b"NVIDIA L4"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=(4 if handle == 0 else 0) * GiB, total=80 * GiB, free=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        if handle:
            return []
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=1 * GiB),
                SimpleNamespace(pid=self.other_pid, usedGpuMemory=3 * GiB),
                SimpleNamespace(pid=12, usedGpuMemory=None)]  # not permitted to see


def test_a_working_nvml_reports_each_gpu_and_this_apps_share() -> None:
    fake = FakeNvml()
    snap = Sampler([NvmlSource(fake)]).sample()
    assert snap.gpu_status == "ok" and snap.has_gpu
    g0, g1 = snap.gpus
    assert isinstance(g0, GpuSample)
    assert g0.name == "NVIDIA H100 80GB HBM3" and g1.name == "NVIDIA L4"
    assert (g0.used_bytes, g0.total_bytes, g0.free_bytes) == (4 * GiB, 80 * GiB, 76 * GiB)
    assert g0.own_bytes == 1 * GiB  # only this process, not the stranger
    assert snap.vram_own == 1 * GiB and snap.vram_total == 160 * GiB
    assert {p.pid for p in g0.processes} == {os.getpid(), 999_999, 12}


def test_a_watched_worker_counts_as_the_apps_vram() -> None:
    fake = FakeNvml(other_pid=os.getppid())
    sampler = Sampler([NvmlSource(fake)])
    sampler.watch(os.getppid(), "model")
    assert sampler.sample().gpus[0].own_bytes == 4 * GiB


@pytest.mark.parametrize("failing", NVML_CALLS)
def test_nvml_failing_at_any_call_means_no_gpu_and_nothing_else(failing: str) -> None:
    fake = FakeNvml(fail=failing)
    sampler = Sampler([NvmlSource(fake)], pid=os.getpid())
    snap = sampler.sample()
    assert failing in fake.calls, "the fake must have been reached"
    assert snap.gpus == ()
    assert snap.gpu_status.startswith("no GPU (NVML: ")
    assert failing in snap.gpu_status
    # everything else is still there
    assert snap.ram_total > 0 and snap.ram_available > 0 and snap.app_rss > 0
    if failing != "nvmlInit":
        assert fake.shutdowns >= 1, "a half-open NVML is shut down"


def test_after_a_failure_nvml_is_retried_only_after_the_retry_interval() -> None:
    now = [100.0]
    fake = FakeNvml(fail="nvmlDeviceGetMemoryInfo")
    source = NvmlSource(fake, retry_s=30.0, clock=lambda: now[0])
    sampler = Sampler([source])
    assert not sampler.sample().has_gpu
    inits = fake.calls.count("nvmlInit")
    now[0] += 10
    assert not sampler.sample().has_gpu
    assert fake.calls.count("nvmlInit") == inits, "no retry within 30 s"
    fake.fail = None  # the driver came back
    now[0] += 25
    snap = sampler.sample()
    assert snap.has_gpu and fake.calls.count("nvmlInit") == inits + 1


def test_no_gpu_on_this_machine_is_reported_as_such() -> None:
    """The real pynvml here: no driver library, so the snapshot says no GPU with NVML's reason."""
    snap = Sampler().sample()
    if snap.has_gpu:  # pragma: no cover - a machine with an NVIDIA driver
        assert snap.gpus[0].total_bytes > 0
    else:
        assert snap.gpu_status.startswith("no GPU (NVML: ")


def test_missing_nvidia_ml_py_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    snap = Sampler([NvmlSource()]).sample()
    assert snap.gpus == () and "not installed" in snap.gpu_status


def test_another_source_fits_the_protocol() -> None:
    class AppleSource:
        name = "Metal"

        def read(self, pids: Collection[int]) -> tuple[GpuSample, ...]:
            return (GpuSample(0, "Apple M3", 2 * GiB, 16 * GiB, 0),)

        def close(self) -> None:
            pass

    source = AppleSource()
    assert isinstance(source, GpuSource)
    snap = Sampler([NvmlSource(FakeNvml(fail="nvmlInit")), source]).sample()
    assert [g.name for g in snap.gpus] == ["Apple M3"] and snap.gpu_status == "ok"
