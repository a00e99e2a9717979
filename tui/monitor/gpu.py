"""VRAM sources. NVML (nvidia-ml-py) is one implementation of ``GpuSource``; Apple or AMD
sources can be added beside it.

A source either returns a reading or raises; the sampler turns any exception into
"no GPU (...)" and leaves the rest of the snapshot alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from tui.i18n import _


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment."""

    index: int
    name: str
    used_bytes: int
    total_bytes: int
    own_bytes: int
    """VRAM held by the processes the sampler watches (the app and its model workers)."""
    processes: tuple[GpuProcess, ...] = ()
    """Every compute process the driver reports on this GPU."""

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)

    @property
    def fraction_used(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


class GpuUnavailable(Exception):
    """The source has no GPU to report; the message says why (shown as "no GPU (...)")."""


@runtime_checkable
class GpuSource(Protocol):
    """Where VRAM figures come from."""

    name: str
    """Short label used in the status line, e.g. "NVML"."""

    def read(self, pids: Collection[int]) -> tuple[GpuSample, ...]:
        """The GPUs now; ``pids`` are the processes whose VRAM counts as the app's own.

        Raises on any failure (``GpuUnavailable`` or whatever the driver raises).
        """
        ...

    def close(self) -> None: ...


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlSource:
    """NVIDIA GPUs through NVML. ``module`` lets tests inject a fake ``pynvml``.

    After a failure the source shuts NVML down and tries again no sooner than
    ``retry_s`` later, so a machine with no driver pays for one failed init, not one a second.
    """

    name = "NVML"

    def __init__(
        self,
        module: ModuleType | Any | None = None,
        *,
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._module = module
        self._retry_s = retry_s
        self._clock = clock
        self._nvml: Any = None
        self._handles: list[tuple[int, Any, str]] = []
        self._failed: str | None = None
        self._failed_at = 0.0

    def _load(self) -> Any:
        if self._module is not None:
            return self._module
        try:
            import pynvml
        except ImportError as exc:
            raise GpuUnavailable(_("nvidia-ml-py is not installed ({exc})", exc=exc)) from None
        return pynvml

    def _open(self) -> None:
        nvml = self._load()
        nvml.nvmlInit()
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
            handles = []
            for i in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                handles.append((i, handle, _text(nvml.nvmlDeviceGetName(handle))))
        except BaseException:
            self.close()
            raise
        if not handles:
            self.close()
            raise GpuUnavailable(_("no NVIDIA GPU found"))
        self._handles = handles

    def read(self, pids: Collection[int]) -> tuple[GpuSample, ...]:
        if self._failed is not None:
            if self._clock() - self._failed_at < self._retry_s:
                raise GpuUnavailable(self._failed)
            self._failed = None
        try:
            if self._nvml is None:
                self._open()
            return tuple(self._read_one(i, h, name, pids) for i, h, name in self._handles)
        except Exception as exc:
            self.close()
            self._failed = str(exc) or type(exc).__name__
            self._failed_at = self._clock()
            raise GpuUnavailable(self._failed) from None

    def _read_one(self, index: int, handle: Any, name: str, pids: Collection[int]) -> GpuSample:
        nvml = self._nvml
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        procs = []
        for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle) or ():
            used = getattr(p, "usedGpuMemory", None)
            procs.append(GpuProcess(int(p.pid), int(used) if isinstance(used, int) else 0))
        own = sum(p.used_bytes for p in procs if p.pid in pids)
        return GpuSample(index, name, int(mem.used), int(mem.total), own, tuple(procs))

    def close(self) -> None:
        nvml, self._nvml, self._handles = self._nvml, None, []
        if nvml is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                nvml.nvmlShutdown()


def default_sources() -> list[GpuSource]:
    """The sources this platform might have. NVML is the only one so far."""
    return [NvmlSource()]
