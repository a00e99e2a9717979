"""`lmdesk bench ui` runs and reports every figure (no timing assertions: machines differ);
`lmdesk bench app` copes with an `lmdesk ask` that printed nothing."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tui.app import bench_app
from tui.app.bench_ui import run_ui_bench

FIGURES = {
    "start_to_first_frame_s", "burst_tokens_per_s", "us_per_token_first", "us_per_token_last",
    "cost_ratio", "open_2000_paint_ms", "open_2000_settled_ms",
}


def test_ui_bench_reports_its_figures() -> None:
    printed: list[str] = []
    results = run_ui_bench(printed.append, tokens=400, messages=120, batch=50)
    assert set(results) == FIGURES
    assert all(value > 0 for value in results.values())
    assert len(printed) >= 5 and any("tok/s" in line for line in printed)


def _answers(monkeypatch: pytest.MonkeyPatch, outputs: list[str]) -> list[list[str]]:
    """``lmdesk ask`` as the bench runs it, printing ``outputs`` in turn (exit status 0)."""
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, outputs[len(calls) - 1], "")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    return calls


ANSWER = json.dumps({"stats": {"generation_tokens_per_s": 101.5, "generated_tokens": 400}})


def test_app_bench_asks_again_when_ask_printed_nothing(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    calls = _answers(monkeypatch, ["", ANSWER])
    run = bench_app.ask_run("a prompt", 400, tmp_path)
    assert (run.tokens_per_s, run.tokens) == (101.5, 400)
    assert len(calls) == 2 and calls[0][-1] == "a prompt"


def test_app_bench_says_in_one_line_when_ask_never_answers(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    _answers(monkeypatch, ["", "not json"])
    with pytest.raises(RuntimeError, match="printed no answer 2 times"):
        bench_app.ask_run("a prompt", 400, tmp_path)
