"""`lmdesk bench ui` runs and reports every figure (no timing assertions: machines differ)."""

from __future__ import annotations

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
