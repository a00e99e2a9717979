"""System sampling with psutil: RAM, CPU, the app's and each model worker's memory, VRAM.

``Sampler.sample()`` is cheap (a few /proc reads and, where there is a GPU, a few NVML calls)
and meant to be called about once a second off the UI thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from tui.i18n import N_, _
from tui.monitor.gpu import GpuSample, GpuSource, default_sources


@dataclass(frozen=True)
class ProcessSample:
    """A watched process (a model worker): its resident memory is that model's cost."""

    pid: int
    label: str
    rss_bytes: int
    cpu_percent: float
    """Percent of one core since the previous sample (can exceed 100 with several threads)."""
    alive: bool = True


@dataclass(frozen=True)
class MonitorSnapshot:
    time: float
    """``time.monotonic()`` when taken."""
    ram_total: int
    ram_used: int
    ram_available: int
    cpu_percent: float
    """Whole machine, all cores, 0-100."""
    app_rss: int
    app_cpu_percent: float
    workers: tuple[ProcessSample, ...] = ()
    gpus: tuple[GpuSample, ...] = ()
    gpu_status: str = N_("no GPU")
    """"ok" when ``gpus`` is filled, otherwise "no GPU (reason)"."""

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def models_rss(self) -> int:
        return sum(w.rss_bytes for w in self.workers if w.alive)

    @property
    def ram_fraction(self) -> float:
        return self.ram_used / self.ram_total if self.ram_total else 0.0

    @property
    def vram_total(self) -> int:
        return sum(g.total_bytes for g in self.gpus)

    @property
    def vram_free(self) -> int:
        return sum(g.free_bytes for g in self.gpus)

    @property
    def vram_own(self) -> int:
        return sum(g.own_bytes for g in self.gpus)

    def worker(self, pid: int) -> ProcessSample | None:
        return next((w for w in self.workers if w.pid == pid), None)


class Sampler:
    """Takes ``MonitorSnapshot``s. Thread-safe: ``watch``/``unwatch`` may come from any thread.

    ``gpu_sources``: None picks the platform's (NVML); pass ``[]`` for none, or fakes in tests.
    """

    def __init__(
        self,
        gpu_sources: Sequence[GpuSource] | None = None,
        *,
        pid: int | None = None,
    ) -> None:
        self._sources = list(default_sources() if gpu_sources is None else gpu_sources)
        self._lock = threading.Lock()
        self._app = psutil.Process(pid if pid is not None else os.getpid())
        self._app.cpu_percent(None)
        self._watched: dict[int, tuple[str, psutil.Process | None]] = {}
        psutil.cpu_percent(None)  # primes the system-wide counter

    # --- what to watch ---------------------------------------------------------------------

    def watch(self, pid: int, label: str = "model") -> None:
        """Report this process (a model worker) in every snapshot until ``unwatch``."""
        try:
            proc: psutil.Process | None = psutil.Process(pid)
            assert proc is not None
            proc.cpu_percent(None)
        except psutil.Error:
            proc = None
        with self._lock:
            self._watched[pid] = (label, proc)

    def unwatch(self, pid: int) -> None:
        with self._lock:
            self._watched.pop(pid, None)

    @property
    def watched(self) -> dict[int, str]:
        with self._lock:
            return {pid: label for pid, (label, _) in self._watched.items()}

    # --- sampling --------------------------------------------------------------------------

    def sample(self) -> MonitorSnapshot:
        vm = psutil.virtual_memory()
        cpu = psutil.cpu_percent(None)
        with self._lock:
            watched = list(self._watched.items())
        workers = tuple(_sample_process(pid, label, proc) for pid, (label, proc) in watched)
        try:
            app_rss = self._app.memory_info().rss
            app_cpu = self._app.cpu_percent(None)
        except psutil.Error:
            app_rss, app_cpu = 0, 0.0
        pids = {self._app.pid, *(w.pid for w in workers if w.alive)}
        gpus, status = self._read_gpus(pids)
        return MonitorSnapshot(
            time=time.monotonic(),
            ram_total=vm.total,
            ram_used=vm.total - vm.available,
            ram_available=vm.available,
            cpu_percent=cpu,
            app_rss=app_rss,
            app_cpu_percent=app_cpu,
            workers=workers,
            gpus=gpus,
            gpu_status=status,
        )

    def _read_gpus(self, pids: set[int]) -> tuple[tuple[GpuSample, ...], str]:
        if not self._sources:
            return (), _("no GPU")
        gpus: list[GpuSample] = []
        reasons: list[str] = []
        for source in self._sources:
            try:
                gpus.extend(source.read(pids))
            except Exception as exc:
                reasons.append(f"{getattr(source, 'name', type(source).__name__)}: {exc}")
        if gpus:
            return tuple(gpus), "ok"
        return (), _("no GPU ({join})", join='; '.join(reasons)) if reasons else _("no GPU")

    def close(self) -> None:
        for source in self._sources:
            with contextlib.suppress(Exception):  # a broken source must not break shutdown
                source.close()


def _sample_process(pid: int, label: str, proc: psutil.Process | None) -> ProcessSample:
    if proc is None:
        return ProcessSample(pid, label, 0, 0.0, alive=False)
    try:
        with proc.oneshot():
            return ProcessSample(pid, label, proc.memory_info().rss, proc.cpu_percent(None))
    except psutil.Error:
        return ProcessSample(pid, label, 0, 0.0, alive=False)
