"""The doctor lists the RPC workers model profiles name and whether each answers (a real
``lmdesk rpc-worker`` on loopback, a port where nothing listens, a machine elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_doctor import CPU_ONLY, TWO_CORES
from tests.test_rpc_worker import Worker, free_port
from tui.config import Paths, Settings
from tui.doctor import doctor_report
from tui.doctor.report import render_text
from tui.models.profiles import ProfileLibrary
from tui.store import Store

ROOT = Path(__file__).resolve().parents[1]


def test_the_doctor_lists_rpc_workers_and_whether_each_answers(tmp_path: Path,
                                                               smollm: Path) -> None:
    worker = Worker("--mem", "1")
    dead = f"127.0.0.1:{free_port()}"
    paths = Paths(tmp_path / "data", tmp_path / "c", tmp_path / "k")
    with Store.open(paths.data_dir) as store:
        library = ProfileLibrary(store)
        library.create("split", str(smollm), rpc=(worker.address, dead))
        library.create("far", str(smollm), rpc=("10.0.0.7:50052",))
        library.create("local", str(smollm))
    try:
        report = doctor_report(Settings(), paths, llama=CPU_ONLY, speed=TWO_CORES)
        env = {**os.environ, "LMDESK_DATA_DIR": str(paths.data_dir),
               "LMDESK_CONFIG_DIR": str(paths.config_dir)}
        cli = subprocess.run([sys.executable, "-m", "tui.cli", "--offline", "doctor", "--json"],
                             capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    finally:
        worker.stop()
    found = {w.address: w for w in report.rpc_workers}
    up, down, far = found[worker.address], found[dead], found["10.0.0.7:50052"]
    assert (up.address, up.reachable, up.offered_bytes, up.profiles) == (
        worker.address, True, 1 << 30, ("split",))
    assert not down.reachable and "rpc-worker" in down.error
    assert far.address == "10.0.0.7:50052" and far.profiles == ("far",)
    text = render_text(report)
    assert f"  {worker.address}  reachable, offers 1.0 GiB, idle (profile split)" in text
    assert f"  {dead}  NOT reachable: nothing listens" in text
    assert any(dead in p.what for p in report.problems)  # and the fix says what to do
    assert any(u.host == "10.0.0.7" for u in report.network.uses)
    assert not any(u.host == "127.0.0.1" for u in report.network.uses)  # loopback: no network
    # the command: --json has them; offline, the worker elsewhere is not contacted
    assert cli.returncode == 1, cli.stderr  # unusable workers are problems
    listed = {w["address"]: w for w in json.loads(cli.stdout)["rpc_workers"]}
    assert listed[worker.address]["reachable"] is True and not listed[dead]["reachable"]
    assert "offline" in listed["10.0.0.7:50052"]["error"]
