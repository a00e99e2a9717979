"""The app's tuning hooks: alt+y marks a reply good (with its question), alt+u opens the guided
screen. The screen's flow runs on a scripted runner here (training itself is tested for real
in tests/test_tune.py): check shows the estimate, start shows progress, cancel stops, the end
shows the losses and the answers side by side."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textual.widgets import Button, Input, ProgressBar, Select, Static

from tests.app_fixtures import chat, make_app, notifications, pilot_test, send, wait_for
from tui.app.screens.tune import TuneScreen
from tui.models.profiles import Profile
from tui.tune.marks import GoodReplies
from tui.tune.pairs import Pair
from tui.tune.plan import Estimate
from tui.tune.protocol import Cancelled, Evaluated, Finished, Progress, Stage
from tui.tune.run import Sample, TunePlan, TuneResult, TuneSpec


class ScriptedJob:
    def __init__(self, stop_at: int | None) -> None:
        self.stop_at = stop_at
        self.cancelled = threading.Event()

    def events(self) -> Iterator[Any]:
        yield Stage("loading the base model")
        yield Evaluated(0, 3.2)
        for step in range(1, 5):
            if self.stop_at is not None and step > self.stop_at:
                self.cancelled.wait(10)
                yield Cancelled(step - 1)
                return
            yield Progress(step, 4, 1, 3.0 / step, 120.0, 4 - step)
        yield Evaluated(4, 0.4)
        yield Finished("/x/adapter.gguf", 1000, 420, 4, (3.0, 1.5, 1.0, 0.75), 3.2, 0.4,
                       (0.4,), 400, 2.0, 200.0, 1 << 30)

    def cancel(self) -> None:
        self.cancelled.set()


class ScriptedRunner:
    def __init__(self, stop_at: int | None = None) -> None:
        self.specs: list[TuneSpec] = []
        self.job = ScriptedJob(stop_at)

    def plan(self, spec: TuneSpec, *, resuming: bool = False) -> TunePlan:
        self.specs.append(spec)
        est = Estimate(len(spec.source.pairs), len(spec.source.pairs), 0, 120, 40, 30, 4, 480,
                       12.0, 1 << 30, 10 << 20, 64 << 20, "green", "fits this machine")
        return TunePlan(spec, spec.source.pairs, (), est, "llama", 8192)

    def start(self, plan: TunePlan, *, resume: bool = False) -> ScriptedJob:
        return self.job

    def finish(self, plan: TunePlan, done: Finished, *, status: Any = None) -> TuneResult:
        if status:
            status("answering held-out questions")
        profile = Profile(id="prof-1", nickname=plan.spec.name, model_path="base.gguf",
                          lora_path=done.adapter_path)
        record = {"losses": {"holdout_before": 3.2, "holdout_after": 0.4}}
        return TuneResult(plan.spec.name, Path("/x"), Path(done.adapter_path), Path("/x/r.json"),
                          record, profile,
                          (Sample("Q1?", "A1", "base answer one", "tuned answer one"),))

    def stopped_runs(self) -> list[str]:
        return []

    def resume_spec(self, name: str) -> TuneSpec:
        raise AssertionError("not stopped")


def text(screen: TuneScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


@pilot_test
async def test_mark_a_reply_good_then_tune_on_the_marks(tmp_path: Path) -> None:
    app = make_app(tmp_path, reply="Paris. Over and out.")
    runner = ScriptedRunner()
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await send(pilot, "Capital of France?")
        await pilot.press("alt+y")
        await pilot.pause()
        marks = GoodReplies(app.store)
        [pair] = marks.pairs()
        assert (pair.instruction, pair.response) == ("Capital of France?", "Paris. Over and out.")
        assert pair.system == chat(app).meta.system_prompt
        await pilot.press("alt+y")  # again: unmarked
        await pilot.pause()
        assert marks.pairs() == []
        await pilot.press("alt+y")
        await pilot.pause()

        await pilot.press("alt+u")
        await wait_for(pilot, lambda: isinstance(app.screen, TuneScreen))
        screen = app.screen
        assert isinstance(screen, TuneScreen)
        screen._runner = runner
        screen.query_one("#tune-source", Select).value = "marked"
        screen.query_one("#tune-name", Input).value = "paris-style"
        await pilot.click("#tune-check")
        await wait_for(pilot, lambda: not screen.query_one("#tune-start", Button).disabled)
        estimate = screen.query_one("#tune-estimate", Static)
        assert "1 pairs" in text(screen, "#tune-estimate") and estimate.has_class("-green")
        [spec] = runner.specs
        assert spec.source.pairs == (Pair("Capital of France?", "Paris. Over and out.",
                                          chat(app).meta.system_prompt),)
        await pilot.click("#tune-start")
        await wait_for(pilot, lambda: screen.query_one("#tune-samples").display)
        assert screen.query_one(ProgressBar).progress == 4
        status = text(screen, "#tune-status")
        assert "held-out loss 3.200 → 0.400" in status and "paris-style" in status
        assert "tuned answer one" in text(screen, "#tune-tuned-answers")
        assert "base answer one" in text(screen, "#tune-base-answers")
        assert any("paris-style is ready" in m for _, m in notifications(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TuneScreen))


@pilot_test
async def test_cancel_keeps_the_screen_and_says_how_to_resume(tmp_path: Path) -> None:
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"instruction": "a", "response": "b"}\n')
    app = make_app(tmp_path)
    runner = ScriptedRunner(stop_at=2)
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        await pilot.press("alt+u")
        await wait_for(pilot, lambda: isinstance(app.screen, TuneScreen))
        screen = app.screen
        assert isinstance(screen, TuneScreen)
        screen._runner = runner
        screen.query_one("#tune-name", Input).value = "x"
        await pilot.press("f5")
        await pilot.pause()
        assert "Give the path" in text(screen, "#tune-estimate")
        assert screen.query_one("#tune-estimate", Static).has_class("-red")
        screen.query_one("#tune-file", Input).value = str(pairs)
        screen.query_one("#tune-epochs", Input).value = "many"
        await pilot.press("f5")
        await pilot.pause()
        assert "The epochs must be a number" in text(screen, "#tune-estimate")
        screen.query_one("#tune-epochs", Input).value = "2"
        await pilot.press("f5")
        await wait_for(pilot, lambda: not screen.query_one("#tune-start", Button).disabled)
        await pilot.press("f6")
        await wait_for(pilot, lambda: screen.query_one(ProgressBar).progress == 2)
        await pilot.press("escape")  # refused while it trains
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("f8")
        deadline = time.monotonic() + 10
        while screen.running and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert "Stopped after step 2" in text(screen, "#tune-status")
        assert not screen.query_one("#tune-check", Button).disabled
