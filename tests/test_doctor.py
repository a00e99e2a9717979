"""`lmdesk doctor`: machine facts, what it can run, install health, network, first run."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.config import Paths, Settings, resolve_paths
from tui.doctor import doctor_report, first_run_text, is_first_run, mark_first_run_done
from tui.doctor.advice import GIB, capacity
from tui.doctor.cli import add_doctor_parser, cmd_doctor
from tui.doctor.health import check_config, check_data_folder, network_facts
from tui.doctor.machine import (
    LlamaBuild,
    amx_status,
    hf_cache_dir,
    parse_system_info,
    simd_features,
)
from tui.doctor.report import machine_problems, render_text
from tui.models.catalogue import find_entry, load_catalogue
from tui.models.fit import Resources
from tui.models.speed import MachineSpeed, SpeedModel

ROOT = Path(__file__).resolve().parents[1]
CPU_ONLY = LlamaBuild(found=True, version="0.3.36", backends=("CPU",), cpu_features=("AVX2",))
TWO_CORES = SpeedModel(MachineSpeed(bandwidth_gb_s=31.0, gflops=70.0, threads=2))
"""This development machine: 2 cores, 31 GB/s measured."""

X86 = "model name\t: Test CPU\nflags\t\t: fpu pni ssse3 avx avx2 fma f16c amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU implementer\t: 0x41\n"


def test_system_info_gives_backends_and_cpu_features() -> None:
    cpu = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 1 | REPACK = 1 | "
    assert parse_system_info(cpu) == (("CPU",), ("SSE3", "AVX", "AVX2", "AMX_INT8", "REPACK"))
    cuda = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | " + cpu
    backends, feats = parse_system_info(cuda)
    assert backends == ("CUDA", "CPU") and "AVX2" in feats and "USE_GRAPHS" not in feats
    assert parse_system_info("Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ")[0] == (
        "Metal", "CPU")
    assert parse_system_info("")[0] == ("CPU",)


def test_simd_features_from_cpuinfo() -> None:
    assert simd_features(X86, "x86_64") == ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA",
                                            "AMX_INT8")
    assert simd_features(ARM, "aarch64") == ("NEON", "DOTPROD", "MATMUL_INT8", "SVE")
    assert simd_features("", "arm64") == ("NEON", "DOTPROD")  # Apple silicon, no cpuinfo


def test_amx_vm_caveat() -> None:
    with_amx = LlamaBuild(found=True, cpu_features=("AVX2", "AMX_INT8"))
    vm = amx_status(X86, with_amx, advertised=True)  # no amx_tile in these flags
    assert vm.mismatch and vm.build_uses and not vm.kernel_enables
    assert any("AMX" in p.what for p in _problems(with_amx, vm))
    ok = amx_status(X86.replace("amx_int8", "amx_tile amx_int8"), CPU_ONLY, advertised=True)
    assert not ok.mismatch


def _problems(build: LlamaBuild, amx: object) -> list[object]:
    from dataclasses import replace

    facts = doctor_report(Settings(), resolve_paths(), llama=CPU_ONLY, speed=TWO_CORES).machine
    return list(machine_problems(replace(facts, llama=build, amx=amx)))


def test_capacity_judges_memory_and_speed_together() -> None:
    # the machine: 24 GiB RAM, 2 cores, 31 GB/s. A 24B model at Q4_K_M fits in RAM
    # but would write about 2 tokens/s: never "comfortable"
    c = capacity(Resources(20 * GIB, 24 * GIB), TWO_CORES)
    mistral = next(m for m in c.models if m.id == "mistral-small-3.2-24b-instruct")
    assert mistral.verdict == "amber" and mistral.tok_s < 3
    best = c.largest_comfortable
    assert best is not None and best.verdict == "green" and best.tok_s >= 8
    assert best.params < 6e9  # a few billion parameters at most on 2 cores
    assert all(m.params <= best.params for m in c.by_verdict("green"))
    assert c.summary[0].startswith("Comfortable here (fits with margin and writes at least 8")
    assert best.name in c.summary[0] and "24B" not in c.summary[0]
    assert any("Without a GPU" in line for line in c.summary)
    llama70 = next(m for m in c.models if m.id == "llama-3.3-70b-instruct")
    assert llama70.verdict == "red" and "does not fit" in llama70.line
    # a stricter reader: fewer models are comfortable
    strict = capacity(Resources(20 * GIB, 24 * GIB), TWO_CORES, reading_speed=20.0)
    assert strict.largest_comfortable is not None
    assert strict.largest_comfortable.params < best.params
    assert capacity(Resources(GIB // 8, GIB), TWO_CORES).summary[0].startswith("No catalogue")


def test_a_fast_gpu_makes_larger_models_comfortable() -> None:
    gpu = SpeedModel(MachineSpeed(31.0, 70.0, 2, gpu_bandwidth_gb_s=1000.0, gpu_name="RTX"))
    res = Resources(20 * GIB, 24 * GIB, vram_free=23 * GIB, vram_total=24 * GIB, gpu_name="RTX")
    with_gpu = capacity(res, gpu)
    cpu_only = capacity(Resources(20 * GIB, 24 * GIB), TWO_CORES)
    assert with_gpu.largest_comfortable is not None and cpu_only.largest_comfortable is not None
    assert with_gpu.largest_comfortable.params > 4 * cpu_only.largest_comfortable.params
    assert not any("Without a GPU" in line for line in with_gpu.summary)


def test_the_capacity_reads_the_shared_catalogue() -> None:
    c = capacity(Resources(20 * GIB, 24 * GIB), TWO_CORES)
    ids = {m.id for m in c.models}
    assert {e.id for e in load_catalogue() if e.has_files} == ids
    qwen = find_entry("qwen3-8b")
    assert qwen is not None and qwen.id in ids


def test_data_folder_problems_come_with_fixes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "conversations").mkdir(parents=True)
    data.chmod(0o755)
    (data / "index.json").write_text("{}")
    (data / "index.json").chmod(0o600)
    (data / "conversations" / "abc.json").write_text("{not json")
    (data / "conversations" / "abc.json").chmod(0o600)
    folder, problems = check_data_folder(data)
    assert folder.mode == "0755" and folder.json_files == 2 and folder.writable
    assert folder.bad_files == (str(data / "conversations" / "abc.json"),)
    fixes = {p.fix for p in problems}
    assert f"chmod 700 {data}" in fixes
    assert any("sets abc.json aside" in f for f in fixes)
    data.chmod(0o700)
    (data / "conversations" / "abc.json").write_text("{}")
    assert check_data_folder(data)[1] == []
    assert check_data_folder(tmp_path / "absent") == (check_data_folder(tmp_path / "absent")[0],
                                                      [])


def test_config_problems(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "d", tmp_path / "c", tmp_path / "k")
    assert check_config(paths)[0].exists is False
    paths.config_dir.mkdir()
    paths.config_file.write_text('offline = true\ncolour = "red"\n')
    cfg, problems = check_config(paths)
    assert cfg.parses and cfg.unknown_keys == ("colour",)
    assert len(problems) == 1 and "remove it" in problems[0].fix
    paths.config_file.write_text("offline = [")
    cfg, problems = check_config(paths)
    assert not cfg.parses and "TOML syntax" in problems[0].fix


def test_network_lists_downloads_and_remote_endpoints_only(tmp_path: Path) -> None:
    from tui.store import Store

    assert [u.host for u in network_facts(True, "config", None).uses] == ["huggingface.co"]
    with Store.open(tmp_path / "data") as store:
        store.set_setting("endpoints", [
            {"name": "gpu box", "url": "http://10.0.0.5:8080/v1"},
            {"name": "local", "url": "http://127.0.0.1:11434"},
        ])
        store.table("endpoints").insert({"url": "https://api.example.com/v1"})
        uses = network_facts(True, "config", store).uses
    assert [u.host for u in uses] == ["huggingface.co", "10.0.0.5", "api.example.com"]
    paths = Paths(tmp_path / "data", tmp_path / "c", tmp_path / "k")
    report = doctor_report(Settings(), paths, llama=CPU_ONLY,
                           speed=TWO_CORES)  # reads the store read-only
    assert [u.host for u in report.network.uses] == ["huggingface.co", "10.0.0.5",
                                                     "api.example.com"]


def test_hf_cache_location_follows_its_rules(tmp_path: Path) -> None:
    assert hf_cache_dir({"HF_HUB_CACHE": "/x/hub"}) == Path("/x/hub")
    assert hf_cache_dir({"HF_HOME": "/h"}) == Path("/h/hub")
    assert hf_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")


def test_cmd_doctor_json_and_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    (hub / "models--org--Model-GGUF" / "blobs").mkdir(parents=True)
    (hub / "models--org--Model-GGUF" / "blobs" / "x").write_bytes(b"0" * 1000)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    parser = argparse.ArgumentParser()
    add_doctor_parser(parser.add_subparsers(dest="command"))
    paths, out = resolve_paths(), io.StringIO()
    rc = cmd_doctor(parser.parse_args(["doctor", "--json"]), Settings(), paths, out=out)
    data = json.loads(out.getvalue())
    assert rc == (1 if data["problems"] else 0)
    assert set(data) == {"machine", "capacity", "health", "network", "problems", "rpc_workers"}
    assert data["machine"]["logical_cores"] >= 1 and data["machine"]["ram_total"] > 0
    assert "CPU" in data["machine"]["llama"]["backends"]  # asked in a subprocess
    assert data["health"]["hf_cache"]["models"] == ["org/Model-GGUF"]
    assert data["health"]["hf_cache"]["size_bytes"] == 1000
    assert data["network"]["offline"] is True
    out = io.StringIO()
    cmd_doctor(parser.parse_args(["doctor"]), Settings(), paths, out=out)
    text = out.getvalue()
    for heading in ("Machine", "What it can run", "Install", "Network"):
        assert f"\n{heading}\n" in f"\n{text}"
    assert "would use the network only for" in text


def test_problem_report_renders_fixes(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data", tmp_path / "conf", tmp_path / "cache")
    paths.data_dir.mkdir(mode=0o777)
    paths.data_dir.chmod(0o777)
    broken = LlamaBuild(found=False, error="llama_cpp does not import: ImportError")
    report = doctor_report(Settings(), paths, llama=broken, speed=TWO_CORES)
    text = render_text(report)
    assert f"fix: chmod 700 {paths.data_dir}" in text
    assert "fix: run scripts/install" in text


def test_first_run(tmp_path: Path) -> None:
    from tui.store import Store

    paths = Paths(tmp_path / "data", tmp_path / "conf", tmp_path / "cache")
    report = doctor_report(Settings(), paths, llama=CPU_ONLY, speed=TWO_CORES)
    text = first_run_text(report, "smollm2-135m")
    assert str(paths.data_dir) in text and "Nothing leaves this machine" in text
    assert "Loaded model: smollm2-135m." in text and "Comfortable on this machine" in text
    best = report.capacity.largest_comfortable
    assert best is not None and best.name in text and "tok/s" in text
    with Store.open(paths.data_dir) as store:
        assert is_first_run(store)
        mark_first_run_done(store)
        assert not is_first_run(store)
    with Store.open(paths.data_dir, read_only=True) as store:
        assert not is_first_run(store)


def test_doctor_imports_neither_llama_cpp_nor_textual() -> None:
    code = (
        "import sys\n"
        "from tui.config import Settings, resolve_paths\n"
        "from tui.doctor import doctor_report\n"
        "r = doctor_report(Settings(), resolve_paths())\n"
        "assert r.machine.llama.found, r.machine.llama.error\n"
        "print(sorted(m for m in ('llama_cpp', 'textual', 'huggingface_hub') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
