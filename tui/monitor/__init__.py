"""RAM, CPU, VRAM and token rates. No Textual import here: the app samples this on a timer."""

from tui.monitor.gpu import GpuProcess, GpuSample, GpuSource, GpuUnavailable, NvmlSource
from tui.monitor.rates import RateSnapshot, RateTracker, ReplyRate, sparkline
from tui.monitor.system import MonitorSnapshot, ProcessSample, Sampler

__all__ = [
    "GpuProcess",
    "GpuSample",
    "GpuSource",
    "GpuUnavailable",
    "MonitorSnapshot",
    "NvmlSource",
    "ProcessSample",
    "RateSnapshot",
    "RateTracker",
    "ReplyRate",
    "Sampler",
    "sparkline",
]
