"""The reply being streamed is drawn at a bounded rate, whatever the model's speed.

Every frame the app draws while a reply streams is CPU taken from the model worker on the same
cores. The frames are counted where Textual hands a finished frame to the terminal driver
(``App._display``), from the first token to the end of the reply, for a model at 200 and at
2,000 tokens/s: the count per second stays under the bound at both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.app_fixtures import chat, make_app, pilot_test, wait_for
from tui.app.bench_ui import reply_tokens
from tui.app.frame_pacer import FASTEST_S, FramePacer
from tui.app.widgets.message_view import LiveReply
from tui.config import Settings
from tui.engine.scripted import ScriptedEngine

FRAMES_PER_S_BOUND = 1 / FASTEST_S + 5
"""One frame per flush, plus the odd frame something else asks for (a cursor blink, the
monitor's sample, a frozen stretch mounted)."""


async def _frames_per_second(tmp_path: Path, delay_s: float) -> tuple[float, int]:
    engine = ScriptedEngine(tokens=reply_tokens(3000), delay_s=delay_s)
    app = make_app(tmp_path, engine=engine, settings=Settings(max_tokens=3000))
    frames: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        display = app._display

        def counting(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                frames.append(time.perf_counter())
            display(screen, renderable)

        app._display = counting  # type: ignore[method-assign]
        pane = chat(app).pane
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pane.send("Write a long answer with code.")
        job = pane.job
        assert job is not None
        froze = False
        while pane.job is not None:
            froze = froze or any(live.body.frozen for live in pane.query(LiveReply))
            await pilot.pause(0.05)
        ended = time.perf_counter()
        assert froze  # a long reply: frozen stretches and the live end both drawn
        assert job.first_token_at is not None
        began = job.first_token_at
        streamed = [t for t in frames if began <= t <= ended]
        return len(streamed) / (ended - began), job.tokens_shown


@pilot_test
async def test_frames_are_bounded_at_200_tokens_per_second(tmp_path: Path) -> None:
    rate, tokens = await _frames_per_second(tmp_path, 0.005)
    assert tokens == 3000
    assert rate <= FRAMES_PER_S_BOUND, f"{rate:.1f} frames/s while streaming"


@pilot_test
async def test_frames_are_bounded_at_2000_tokens_per_second(tmp_path: Path) -> None:
    rate, tokens = await _frames_per_second(tmp_path, 0.0005)
    assert tokens == 3000
    assert rate <= FRAMES_PER_S_BOUND, f"{rate:.1f} frames/s while streaming"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 0.0

    def wall(self) -> float:
        return self.now

    def process(self) -> float:
        return self.cpu


def _run(pacer: FramePacer, clock: _Clock, seconds: float, cpu_per_draw: float) -> int:
    """Tick every FASTEST_S for ``seconds``; each draw costs ``cpu_per_draw``."""
    draws = 0
    for _ in range(round(seconds / FASTEST_S)):
        clock.now += FASTEST_S
        if pacer.due():
            draws += 1
            clock.cpu += cpu_per_draw
    return draws


def test_pacer_draws_less_often_when_frames_are_expensive() -> None:
    clock = _Clock()
    pacer = FramePacer(clock=clock.wall, cpu=clock.process)
    pacer.start()
    cheap = _run(pacer, clock, 4.0, 0.001)
    assert pacer.interval_s == FASTEST_S
    assert cheap >= 0.9 * 4.0 / FASTEST_S  # every tick draws
    expensive = _run(pacer, clock, 4.0, 0.015)  # 15 ms a frame: 37% of a core at full rate
    assert pacer.interval_s >= 4 * FASTEST_S
    assert expensive < cheap / 2
    # the budget holds once the pacer has settled
    cpu_before, draws = clock.cpu, _run(pacer, clock, 4.0, 0.015)
    assert (clock.cpu - cpu_before) / 4.0 <= pacer.budget
    assert draws > 0
    # cheap again: back to the fastest rate
    _run(pacer, clock, 6.0, 0.001)
    assert pacer.interval_s == FASTEST_S


def test_pacer_starts_a_reply_near_the_rate_the_last_one_settled_on() -> None:
    clock = _Clock()
    pacer = FramePacer(clock=clock.wall, cpu=clock.process)
    pacer.start()
    assert pacer.interval_s == FASTEST_S  # the first reply: the fastest, until costs are known
    _run(pacer, clock, 3.0, 0.05)
    settled = pacer.interval_s
    assert settled > 2 * FASTEST_S
    pacer.start()
    assert pacer.interval_s == settled / 2
    clock.now += FASTEST_S
    assert pacer.due()  # the first frame of a reply is drawn at once
    _run(pacer, clock, 6.0, 0.001)  # cheap frames: back to the fastest
    pacer.start()
    assert pacer.interval_s == FASTEST_S


@pilot_test
async def test_the_prompt_cursor_does_not_blink_while_a_reply_streams(tmp_path: Path) -> None:
    """A blinking cursor repaints the prompt twice a second, for nothing while the user
    reads the reply; it is steady then and blinks again once the reply is done."""
    engine = ScriptedEngine(tokens=reply_tokens(200), delay_s=0.01)
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = chat(app).pane
        await wait_for(pilot, lambda: app.model_state == "ready")
        assert pane.prompt.cursor_blink
        await pane.send("Write something.")
        await wait_for(pilot, lambda: pane.job is not None and pane.job.tokens_shown > 0)
        assert not pane.prompt.cursor_blink
        await wait_for(pilot, lambda: not pane.generating, timeout=20)
        assert pane.prompt.cursor_blink


def test_pacer_wait_is_the_time_to_the_next_frame() -> None:
    clock = _Clock()
    pacer = FramePacer(clock=clock.wall, cpu=clock.process)
    pacer.start()
    clock.now += FASTEST_S
    assert pacer.due()
    assert 0 < pacer.wait_s() <= pacer.interval_s
    _run(pacer, clock, 3.0, 0.05)  # expensive frames: further apart, and so is the wait
    clock.now += 0.001
    pacer.due()
    assert pacer.wait_s() > FASTEST_S
