"""The doctor's report: one dataclass for the CLI, ``--json`` and the app screen, rendered to text
separately. Also the first-run lines."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tui.config import Paths, Settings
from tui.doctor.advice import GIB, Capacity, capacity
from tui.doctor.health import (
    Health,
    Network,
    Problem,
    RpcWorkerFact,
    install_health,
    network_facts,
    rpc_problems,
    rpc_workers,
)
from tui.doctor.machine import LlamaBuild, MachineFacts, hf_cache_dir, machine_facts
from tui.i18n import _, format_number

LOW_DISK = 5 * GIB
WELCOME_KEY = "welcome_shown"


@dataclass(frozen=True)
class DoctorReport:
    machine: MachineFacts
    capacity: Capacity
    health: Health
    network: Network
    problems: tuple[Problem, ...]
    """Every problem found, each with its fix (the install's and the machine's)."""
    rpc_workers: tuple[RpcWorkerFact, ...] = ()
    """The RPC workers model profiles name, each asked whether it answers."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_problems(m: MachineFacts) -> list[Problem]:
    out: list[Problem] = []
    if not m.llama.found:
        out.append(Problem(_("llama.cpp is not usable: {error}", error=m.llama.error),
                           _("run scripts/install (or: pip install llama-cpp-python)")))
    if m.gpus and m.llama.found and not m.llama.gpu_offload:
        out.append(Problem(
            _("{name} is present but this llama.cpp build cannot use it (CPU only)",
              name=m.gpus[0].name),
            'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python"))
    if m.amx.mismatch and m.amx.build_uses:
        out.append(Problem(
            _("the CPU advertises AMX but the kernel does not enable it (a VM), and this "
              "llama.cpp build uses AMX: it may crash"),
            _("run scripts/install: it builds without AMX here")))
    for d in m.disks:
        if d.free_bytes < LOW_DISK:
            out.append(Problem(_("only {gib} free on the disk of {label} ({path})",
                                 gib=_gib(d.free_bytes), label=d.label,
                                 path=d.path), _("free some space before downloading a model")))
    return out


def doctor_report(
    settings: Settings,
    paths: Paths,
    *,
    offline: Any | None = None,
    store: Any | None = None,
    env: Mapping[str, str] | None = None,
    llama: LlamaBuild | None = None,
    speed: Any | None = None,
) -> DoctorReport:
    """Everything the doctor knows. ``offline`` is an ``OfflineState`` (decided from the settings
    and ``env`` when absent); ``store`` is read for remote endpoints (opened read-only from the
    data folder when absent and it exists). ``speed`` is a ``SpeedModel`` (measured here and
    kept in the data folder when absent)."""
    from tui.offline import decide_offline

    env = os.environ if env is None else env
    hf = hf_cache_dir(env)
    places: dict[str, Path] = {"data folder": paths.data_dir, "Hugging Face cache": hf}
    for folder in settings.model_dirs:
        places[f"model folder {folder}"] = Path(folder).expanduser()
    machine = machine_facts(places, llama=llama)
    cap = capacity(_resources(machine), speed if speed is not None else _speed(paths),
                   reading_speed=settings.reading_speed)
    health = install_health(paths, hf)
    if offline is not None:
        is_off, source = bool(offline.offline), str(offline.source)
    else:
        is_off, source, _unused = decide_offline(settings.offline, None, env)
    workers = tuple(rpc_workers(_profiles(paths, health, store)))
    network = network_facts(is_off, source, store if store is not None else _read_store(paths,
                            health), workers)
    problems = (*health.problems, *machine_problems(machine), *rpc_problems(workers))
    return DoctorReport(machine, cap, health, network, problems, workers)


def _profiles(paths: Paths, health: Health, store: Any | None) -> list[Any]:
    """The model profiles (from ``store``, else read-only from the data folder)."""
    from tui.models.profiles import ProfileLibrary, stored_profiles

    if store is not None:
        try:
            return ProfileLibrary(store).list()
        except Exception:  # a store stand-in without a profiles table
            return []
    if health.data.bad_files:
        return []
    return stored_profiles(paths.data_dir)


def _resources(m: MachineFacts) -> Any:
    from tui.models.fit import Resources

    gpu = max(m.gpus, key=lambda g: g.vram_free, default=None) if m.llama.gpu_offload else None
    if gpu is None:
        return Resources(m.ram_available, m.ram_total)
    return Resources(m.ram_available, m.ram_total, gpu.vram_free, gpu.vram_total, gpu.name)


def _speed(paths: Paths) -> Any:
    """The speed model; the machine probe is kept only where the data folder already is."""
    from tui.models.calibration import speed_model

    return speed_model(paths.data_dir if paths.data_dir.is_dir() else None)


def _read_store(paths: Paths, health: Health) -> Any | None:
    """The store, read-only, only when it exists and parses (the doctor changes nothing)."""
    if not (paths.data_dir / "index.json").is_file() or health.data.bad_files:
        return None
    try:
        from tui.store import Store

        return _Snapshot(Store.open(paths.data_dir, read_only=True))
    except Exception:
        return None


class _Snapshot:
    """Reads the endpoints out of a store and closes it at once."""

    def __init__(self, store: Any) -> None:
        try:
            self._setting = store.get_setting("endpoints")
            try:
                self._rows = list(store.table("endpoints").all())
            except Exception:
                self._rows = []
        finally:
            store.close()

    def get_setting(self, key: str, default: Any = None) -> Any:
        return self._setting if key == "endpoints" else default

    def table(self, name: str) -> Any:
        rows = self._rows

        class _T:
            def all(self) -> list[Any]:
                return rows

        return _T()


# -- text ------------------------------------------------------------------------------------


def _gib(n: int) -> str:
    return f"{format_number(n / GIB, 1)} GiB"


def render_text(r: DoctorReport) -> str:
    from tui.models.fit import verdict_name

    m, h, n, c = r.machine, r.health, r.network, r.capacity
    out: list[str] = [_("Machine")]
    out.append(f"  CPU      {m.cpu_model} ({m.arch}, {m.os})")
    out.append(_("  cores    {physical_cores} physical, {logical_cores} logical",
                 physical_cores=m.physical_cores, logical_cores=m.logical_cores))
    simd = " ".join(m.simd) or _("none detected")
    out.append(f"  SIMD     {simd}")
    out.append(_("  RAM      {gib} available of {gib2}",
                 gib=_gib(m.ram_available), gib2=_gib(m.ram_total)))
    if m.gpus:
        for g in m.gpus:
            out.append(_("  GPU {index}    {name}: {gib} free of {gib2} VRAM",
                         index=g.index, name=g.name, gib=_gib(g.vram_free),
                         gib2=_gib(g.vram_total)))
    else:
        out.append(_("  GPU      none ({gpu_note})",
                     gpu_note=m.gpu_note) if m.gpu_note else _("  GPU      none"))
    if m.llama.found:
        gpu = _("GPU offload") if m.llama.gpu_offload else _("no GPU offload")
        out.append(_("  llama    llama-cpp-python {version}: backends {join} ({gpu})",
                     version=m.llama.version, join=', '.join(m.llama.backends), gpu=gpu))
        if m.llama.cpu_features:
            out.append(_("           uses {features}", features=" ".join(m.llama.cpu_features)))
    else:
        out.append(_("  llama    not usable: {error}", error=m.llama.error))
    a = m.amx
    if a.compiler_advertises or a.kernel_enables:
        state = _("enabled by the kernel") if a.kernel_enables else _("NOT enabled by the kernel "
                                                                   "(VM)")
        adv = {True: _("advertised by the CPU"), False: _("not advertised"),
               None: _("cpuid unknown")}
        out.append(_("  AMX      {advertised}, {state}; build uses it", advertised=adv[
            a.compiler_advertises], state=state) if a.build_uses else _(
            "  AMX      {advertised}, {state}; build does not use it",
            advertised=adv[a.compiler_advertises], state=state))
    for d in m.disks:
        out.append(_("  disk     {gib} free for the {label} ({path})",
                     gib=_gib(d.free_bytes), label=d.label, path=d.path))
    out += ["", _("What it can run")]
    out += [f"  {line}" for line in c.summary]
    ms = c.machine
    out.append(_("  speed from {bandwidth_gb_s:.0f} GB/s memory read and {gflops:.0f} GFLOP/s "
                 "measured here, {speed_basis}",
                 bandwidth_gb_s=ms.bandwidth_gb_s, gflops=ms.gflops, speed_basis=c.speed_basis))
    for verdict, label in (("green", _("comfortable")), ("amber", _("fit, slow or tight")),
                           ("red", _("too large here"))):
        group = sorted(c.by_verdict(verdict), key=lambda m: m.params)
        if not group:
            continue
        out.append(f"  {label} ({verdict_name(verdict)}):")
        for mf in group:
            out.append(f"    {mf.name:34} {mf.line}")
    out += ["", _("Install")]
    data = h.data
    if data.exists:
        rw = _("writable") if data.writable else _("READ-ONLY")
        out.append(_("  data     {path} (mode {mode}, {rw}, {json_files} files, {count} damaged)",
                     path=data.path, mode=data.mode, rw=rw, json_files=data.json_files,
                     count=len(data.bad_files)))
    else:
        out.append(_("  data     {path} (not created yet)", path=data.path))
    cf = h.config
    cstate = ((_("parses") if cf.parses else _("DOES NOT PARSE")) if cf.exists
              else _("absent: defaults"))
    unknown = _("; unknown keys: {join}",
                join=', '.join(cf.unknown_keys)) if cf.unknown_keys else ""
    out.append(f"  config   {cf.path} ({cstate}{unknown})")
    model = h.default_model or _("the packaged default model is MISSING")
    out.append(_("  model    {model}", model=model))
    hc = h.hf_cache
    if hc.exists:
        out.append(_("  HF cache {path} ({gib}, {count} repos)",
                     path=hc.path, gib=_gib(hc.size_bytes), count=len(hc.models)))
    else:
        out.append(_("  HF cache {path} (empty)", path=hc.path))
    out += ["", _("Network")]
    mode = _("ON: every outbound connection is refused") if n.offline else _("OFF (online)")
    out.append(_("  offline  {mode} (from the {source})", mode=mode, source=n.source))
    out.append(_("  lmdesk would use the network only for:"))
    out += [f"    - {u.what}: {u.host}, {u.when}" for u in n.uses]
    out.append(_("  nothing else: no telemetry, no update check"))
    if r.rpc_workers:
        out += ["", _("RPC workers (from model profiles)")]
        for w in r.rpc_workers:
            used_by = _("profile {names}", names=", ".join(w.profiles))
            if w.reachable:
                state = _("serving a model") if w.busy else _("idle")
                out.append(_("  {address}  reachable, offers {gib}, {state} ({used_by})",
                             address=w.address, gib=_gib(w.offered_bytes), state=state,
                             used_by=used_by))
            else:
                out.append(_("  {address}  NOT reachable: {error} ({used_by})",
                             address=w.address, error=w.error, used_by=used_by))
    out += ["", _("Problems") if r.problems else _("No problems found.")]
    for p in r.problems:
        out.append(f"  - {p.what}")
        out.append(_("    fix: {fix}", fix=p.fix))
    return "\n".join(out) + "\n"


# -- first run -------------------------------------------------------------------------------


def first_run_text(report: DoctorReport, model_name: str | None = None) -> str:
    """A few lines for the first start: where data is kept, that nothing leaves the machine,
    which model is loaded, and what this machine could run next."""
    h, n = report.health, report.network
    model = model_name or (Path(h.default_model).stem if h.default_model else _("none yet"))
    lines = [
        _("Your conversations are kept on this machine, in {path} (only you can read it).",
          path=h.data.path),
        (_("Nothing leaves this machine: lmdesk is offline and refuses every outbound "
           "connection unless you start a download or use a remote endpoint.")) if n.offline else
        (_("lmdesk is online: it connects only for downloads you start and remote endpoints you "
           "set up. No telemetry, no update check.")),
        _("Loaded model: {model}.", model=model),
    ]
    best = report.capacity.largest_comfortable
    if best is not None:
        lines.append(_("Comfortable on this machine (fits with margin and writes at least "
                       "{reading_speed:g} tok/s): up to {name}, {line}.",
                       reading_speed=report.capacity.reading_speed, name=best.name, line=best.line))
    elif report.capacity.summary:
        lines.append(report.capacity.summary[0])
    lines.append(_("`lmdesk doctor` shows the details."))
    return "\n".join(lines) + "\n"


def is_first_run(store: Any) -> bool:
    """Never welcomed, and nothing written yet (a folder whose settings were lost but whose
    conversations are there is not a fresh install)."""
    if store.get_setting(WELCOME_KEY, False):
        return False
    return not any(meta.message_count for meta in store.list_conversations())


def mark_first_run_done(store: Any) -> None:
    store.set_setting(WELCOME_KEY, True)
