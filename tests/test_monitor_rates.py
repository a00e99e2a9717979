"""Token rates from timestamped deltas: live tok/s, ttft, prompt tok/s, history, context fill."""

from __future__ import annotations

import pytest

from tui.engine.protocol import GenerationStats
from tui.monitor import RateTracker, sparkline


def stream(tracker: RateTracker, start: float, ttft: float, n: int, rate: float) -> float:
    """Send ``n`` one-token deltas at ``rate`` tok/s after ``ttft``; return the last time."""
    t = start + ttft
    for i in range(n):
        tracker.delta(1, now=t + i / rate)
    return t + (n - 1) / rate


def test_live_rate_ttft_and_prompt_rate_while_streaming() -> None:
    tr = RateTracker(window_s=2.0)
    tr.set_context(0, n_ctx=8192)
    tr.start(prompt_tokens=200, now=10.0)
    snap = tr.snapshot(now=10.1)
    assert snap.streaming and snap.live_tokens_per_s == 0.0 and snap.ttft_s is None
    last = stream(tr, 10.0, 0.5, 101, 50.0)  # 50 tok/s for 2 s
    snap = tr.snapshot(now=last)
    assert snap.live_tokens_per_s == pytest.approx(50.0, rel=0.02)
    assert snap.ttft_s == pytest.approx(0.5)
    assert snap.prompt_tokens_per_s == pytest.approx(400.0)  # 200 tokens before the first
    assert snap.generated_tokens == 101
    assert snap.context_tokens == 301 and snap.context_fill == pytest.approx(301 / 8192)


def test_live_rate_follows_a_change_of_speed_within_the_window() -> None:
    tr = RateTracker(window_s=1.0)
    tr.start(now=0.0)
    t = stream(tr, 0.0, 0.1, 200, 100.0)  # 2 s at 100 tok/s
    for i in range(1, 41):  # then 2 s at 20 tok/s
        tr.delta(1, now=t + i / 20)
    assert tr.snapshot(now=t + 2.0).live_tokens_per_s == pytest.approx(20.0, rel=0.1)


def test_a_stalled_stream_decays_toward_zero() -> None:
    tr = RateTracker(window_s=2.0)
    tr.start(now=0.0)
    last = stream(tr, 0.0, 0.1, 100, 100.0)
    fresh = tr.snapshot(now=last).live_tokens_per_s
    stale = tr.snapshot(now=last + 10.0).live_tokens_per_s
    assert stale < fresh / 4


def test_finish_prefers_llama_cpp_stats_and_keeps_a_history() -> None:
    tr = RateTracker(history=3)
    for i, tps in enumerate((10.0, 20.0, 30.0, 40.0)):
        tr.start(prompt_tokens=50, now=i * 10.0)
        stream(tr, i * 10.0, 0.2, 20, 25.0)
        stats = GenerationStats(
            prompt_tokens=50, prompt_tokens_per_s=500.0, generated_tokens=20,
            generation_tokens_per_s=tps, time_to_first_token_s=0.1, reused_tokens=0,
            evaluated_prompt_tokens=50, stop_reason="stop", total_seconds=1.0,
        )
        rate = tr.finish(stats, now=i * 10.0 + 2.0)
        assert rate.tokens_per_s == tps and rate.ttft_s == 0.1
    snap = tr.snapshot()
    assert not snap.streaming
    assert snap.history == (20.0, 30.0, 40.0)  # the last three
    assert snap.live_tokens_per_s == 40.0 and snap.ttft_s == 0.1
    assert snap.prompt_tokens_per_s == 500.0
    assert snap.context_tokens == 70


def test_finish_without_stats_measures_from_the_timestamps() -> None:
    tr = RateTracker()
    tr.start(prompt_tokens=30, now=0.0)
    stream(tr, 0.0, 0.3, 61, 30.0)  # 60 intervals at 30 tok/s
    rate = tr.finish(now=2.5)
    assert rate.tokens_per_s == pytest.approx(30.0)
    assert rate.ttft_s == pytest.approx(0.3)
    assert rate.prompt_tokens_per_s == pytest.approx(100.0)
    assert rate.generated_tokens == 61


def test_deltas_after_finish_are_ignored_and_context_is_clamped() -> None:
    tr = RateTracker()
    tr.set_context(5000, n_ctx=4096)
    assert tr.snapshot().context_fill == 1.0
    tr.start(now=0.0)
    tr.finish(now=1.0)
    tr.delta(5, now=2.0)
    assert tr.snapshot().generated_tokens == 0


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([1, 2, 4, 8]) == "▂▃▅█"
    assert sparkline([1, 8, 8], width=2) == "██"
    assert len(sparkline(range(100), width=10)) == 10
