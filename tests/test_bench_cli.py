"""`lmdesk bench` (the engine) runs end to end and prints its figures; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys


def test_engine_bench_prints_rates_ratio_and_ceiling() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "bench", "--reps", "1", "--tokens", "16"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"gen t/s\s+\d+\.\d\s+\d+\.\d", out), out
    assert re.search(r"engine/bare generation tokens/s = \d+\.\d{3}", out), out
    assert re.search(r"ceiling\s+\d+\.\d GB/s", out), out
    assert re.search(r"worker RSS \d+ MiB", out), out
    assert re.search(r"cancel\s+\d+\.\d", out), out
