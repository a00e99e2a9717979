"""Measuring this machine once: its memory read bandwidth, its matrix-product rate and its
GPU's memory bandwidth, what the speed model scales from."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tui.models.speed import MachineSpeed


def cpu_label() -> str:
    """The CPU's model name and logical cores (a probe from another machine is retaken)."""
    name = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware") and value.strip():
                name = value.strip()
                break
    import platform

    return f"{name or platform.processor() or platform.machine()} x{os.cpu_count() or 1}"


def physical_cores() -> int:
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def measure_bandwidth_gb_s(threads: int, size_mb: int = 64, repeats: int = 15) -> float:
    """Read bandwidth: parallel sums, each thread over its own array larger than the caches,
    the best of many short rounds (a round the scheduler interrupts only loses itself, so a
    busy machine still shows what its memory can do)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    arrays = [np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64) for _ in range(threads)]
    total = sum(a.nbytes for a in arrays)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.sum, arrays))  # page everything in
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, arrays))
            best = max(best, total / (time.perf_counter() - t0))
    return best / 1e9


def measure_gflops(n: int = 512, repeats: int = 15) -> float:
    """float32 matrix products on all cores (numpy's BLAS threads, as prompt evaluation uses
    every logical core): the best rate of many short ones."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best / 1e9


def gpu_bandwidth() -> tuple[float, str]:
    """(GB/s, name) of the largest NVIDIA GPU from its bus width and memory clock; (0, "")."""
    try:
        import pynvml
    except ImportError:
        return 0.0, ""
    try:
        pynvml.nvmlInit()
    except Exception:
        return 0.0, ""
    try:
        best = (0.0, "")
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
            mem_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
            raw = pynvml.nvmlDeviceGetName(handle)
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            gb_s = bus_bits / 8 * mem_mhz * 1e6 * 2 / 1e9  # double data rate
            best = max(best, (gb_s, name))
        return best
    except Exception:
        return 0.0, ""
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def measure_machine(threads: int | None = None) -> MachineSpeed:
    n = threads or physical_cores()
    gpu_gb_s, gpu_name = gpu_bandwidth()
    return MachineSpeed(
        bandwidth_gb_s=measure_bandwidth_gb_s(n), gflops=measure_gflops(), threads=n,
        cpu=cpu_label(), gpu_bandwidth_gb_s=gpu_gb_s, gpu_name=gpu_name,
        measured_at=time.time(),
    )
