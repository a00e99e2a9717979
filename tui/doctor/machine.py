"""Facts about this machine: CPU, SIMD, RAM, GPUs, the llama.cpp build, free disk.

llama.cpp is asked in a subprocess (``python -c ...``) so the doctor never imports llama_cpp.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tui.i18n import _

# /proc/cpuinfo flag -> the name llama.cpp prints, in the order it prints them
X86_SIMD: tuple[tuple[str, str], ...] = (
    ("pni", "SSE3"), ("ssse3", "SSSE3"), ("avx", "AVX"), ("avx_vnni", "AVX_VNNI"),
    ("avx2", "AVX2"), ("f16c", "F16C"), ("fma", "FMA"), ("bmi2", "BMI2"),
    ("avx512f", "AVX512"), ("avx512_vbmi", "AVX512_VBMI"), ("avx512vbmi", "AVX512_VBMI"),
    ("avx512_vnni", "AVX512_VNNI"), ("avx512_bf16", "AVX512_BF16"),
    ("amx_tile", "AMX"), ("amx_int8", "AMX_INT8"), ("amx_bf16", "AMX_BF16"),
)
ARM_SIMD: tuple[tuple[str, str], ...] = (
    ("asimd", "NEON"), ("neon", "NEON"), ("asimddp", "DOTPROD"), ("i8mm", "MATMUL_INT8"),
    ("fphp", "FP16_VA"), ("sve", "SVE"), ("sve2", "SVE2"), ("sme", "SME"),
)
BACKENDS = ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL", "CANN", "MUSA", "BLAS")

_PROBE = r"""
import json, llama_cpp
info = llama_cpp.llama_print_system_info()
print(json.dumps({
    "version": getattr(llama_cpp, "__version__", "?"),
    "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    "system_info": info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info),
}))
"""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class LlamaBuild:
    found: bool
    version: str = ""
    gpu_offload: bool = False
    backends: tuple[str, ...] = ()
    """"CPU" plus any GPU backend the build was compiled with."""
    cpu_features: tuple[str, ...] = ()
    """The CPU features the build uses (``name = 1`` in its system info)."""
    system_info: str = ""
    error: str = ""


@dataclass(frozen=True)
class AmxStatus:
    compiler_advertises: bool | None
    """gcc -march=native enables -mamx-tile (None: no gcc, or not x86-64)."""
    kernel_enables: bool
    """/proc/cpuinfo lists amx_tile."""
    build_uses: bool

    @property
    def mismatch(self) -> bool:
        """The VM case scripts/install works around: advertised, but the kernel refuses it."""
        return bool(self.compiler_advertises) and not self.kernel_enables


@dataclass(frozen=True)
class DiskInfo:
    label: str
    path: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class MachineFacts:
    os: str
    arch: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    simd: tuple[str, ...]
    ram_total: int
    ram_available: int
    gpus: tuple[GpuInfo, ...]
    gpu_note: str
    """Why there is no GPU ("no NVIDIA GPU found", ...), or "" when there is one."""
    llama: LlamaBuild
    amx: AmxStatus
    disks: tuple[DiskInfo, ...] = field(default_factory=tuple)


def read_cpuinfo(path: str = "/proc/cpuinfo") -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(text: str, *names: str) -> str:
    for line in text.splitlines():
        key, _colon, value = line.partition(":")
        if key.strip().lower() in names and value.strip():
            return value.strip()
    return ""


def cpu_flags(cpuinfo: str) -> set[str]:
    return set(_cpuinfo_field(cpuinfo, "flags", "features").lower().split())


def simd_features(cpuinfo: str, machine: str) -> tuple[str, ...]:
    """The SIMD features llama.cpp cares about, named as llama.cpp names them."""
    flags = cpu_flags(cpuinfo)
    arm = machine.lower() in ("arm64", "aarch64") or machine.lower().startswith("arm")
    table = ARM_SIMD if arm else X86_SIMD
    found: list[str] = []
    for flag, name in table:
        if flag in flags and name not in found:
            found.append(name)
    if arm and machine.lower() == "arm64" and not flags:  # Apple silicon: NEON and dot product
        found = ["NEON", "DOTPROD"]
    return tuple(found)


def cpu_model(cpuinfo: str) -> str:
    name = _cpuinfo_field(cpuinfo, "model name", "hardware", "processor name")
    if name:
        return name
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=5, check=False,
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or _("unknown CPU")


def parse_system_info(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(backends, CPU features) from ``llama_print_system_info()``, e.g.
    ``CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX = 1 | ...``."""
    backends: list[str] = []
    features: list[str] = []
    section = ""
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        head = re.match(r"^([A-Za-z][\w-]*)\s*:\s*(.*)$", part)
        if head and "=" not in head.group(1):
            section = head.group(1)
            if section not in backends:
                backends.append(section)
            part = head.group(2)
        key, eq, value = part.partition("=")
        if eq and section.upper() == "CPU" and value.strip() == "1":
            features.append(key.strip())
    known = [b for b in backends if b == "CPU" or b.upper() in (x.upper() for x in BACKENDS)]
    if "CPU" not in known:
        known.insert(0, "CPU")
    return tuple(known), tuple(features)


def probe_llama(python: str = sys.executable, timeout: float = 60.0) -> LlamaBuild:
    """Ask llama_cpp about its build in a child process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        out = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
            env=env, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return LlamaBuild(found=False, error=_("could not ask llama_cpp: {exc}", exc=exc))
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [_("no output")])[-1]
        return LlamaBuild(found=False, error=_("llama_cpp does not import: {last}", last=last))
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return LlamaBuild(found=False, error=_("unreadable answer from llama_cpp: {stdout!r}",
                                               stdout=out.stdout))
    info = str(data.get("system_info", ""))
    backends, features = parse_system_info(info)
    return LlamaBuild(
        found=True,
        version=str(data.get("version", "?")),
        gpu_offload=bool(data.get("gpu_offload")),
        backends=backends,
        cpu_features=features,
        system_info=info.strip(),
    )


def gcc_advertises_amx() -> bool | None:
    """What scripts/install checks: does ``gcc -march=native`` turn on -mamx-tile?"""
    if platform.machine().lower() not in ("x86_64", "amd64") or shutil.which("gcc") is None:
        return None
    try:
        out = subprocess.run(
            ["gcc", "-march=native", "-Q", "--help=target"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return re.search(r"-mamx-tile\s+\[enabled\]", out.stdout) is not None


def amx_status(cpuinfo: str, build: LlamaBuild, advertised: bool | None) -> AmxStatus:
    return AmxStatus(
        compiler_advertises=advertised,
        kernel_enables="amx_tile" in cpu_flags(cpuinfo),
        build_uses=any(f.upper().startswith("AMX") for f in build.cpu_features),
    )


def read_gpus() -> tuple[tuple[GpuInfo, ...], str]:
    """NVIDIA GPUs through the monitor's NVML source; (gpus, why none)."""
    try:
        from tui.monitor.gpu import default_sources
    except ImportError as exc:  # pragma: no cover - the monitor ships with lmdesk
        return (), _("no GPU source ({exc})", exc=exc)
    gpus: list[GpuInfo] = []
    reasons: list[str] = []
    for source in default_sources():
        try:
            for s in source.read(()):
                gpus.append(GpuInfo(s.index, s.name, s.total_bytes, s.free_bytes))
        except Exception as exc:
            reasons.append(str(exc) or type(exc).__name__)
        finally:
            source.close()
    if gpus:
        return tuple(gpus), ""
    return (), "; ".join(reasons) or _("no GPU found")


def hf_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps models, by its own rules, without importing it."""
    e = os.environ if env is None else env
    if e.get("HF_HUB_CACHE"):
        return Path(e["HF_HUB_CACHE"]).expanduser()
    if e.get("HUGGINGFACE_HUB_CACHE"):
        return Path(e["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if e.get("HF_HOME"):
        return Path(e["HF_HOME"]).expanduser() / "hub"
    xdg = e.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def disk_free(label: str, path: Path) -> DiskInfo | None:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return DiskInfo(label, str(path), usage.free, usage.total)


def machine_facts(
    model_places: Mapping[str, Path],
    *,
    cpuinfo: str | None = None,
    llama: LlamaBuild | None = None,
    gpus: Callable[[], tuple[tuple[GpuInfo, ...], str]] = read_gpus,
    advertised_amx: Callable[[], bool | None] = gcc_advertises_amx,
) -> MachineFacts:
    """Everything about this machine; ``model_places`` is label -> folder for disk space."""
    import psutil

    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    build = probe_llama() if llama is None else llama
    mem = psutil.virtual_memory()
    gpu_list, gpu_note = gpus()
    disks = tuple(d for label, p in model_places.items() if (d := disk_free(label, p)))
    return MachineFacts(
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
        cpu_model=cpu_model(text),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        simd=simd_features(text, platform.machine()),
        ram_total=int(mem.total),
        ram_available=int(mem.available),
        gpus=gpu_list,
        gpu_note=gpu_note,
        llama=build,
        amx=amx_status(text, build, advertised_amx()),
        disks=disks,
    )
