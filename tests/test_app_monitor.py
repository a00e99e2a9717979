"""Pilot tests of the monitor panel: RAM, no GPU, live rates, the context bar, collapse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.app_fixtures import FakeSampler, chat, make_app, pilot_test, send, wait_for
from tui.app.widgets.monitor_panel import MonitorPanel
from tui.engine.scripted import ScriptedEngine
from tui.monitor import ProcessSample, Sampler
from tui.store import Store

LONG = " ".join(f"word{i}" for i in range(300))


def body(panel: MonitorPanel) -> str:
    return str(panel.query_one("#monitor-body").render())


@pilot_test
async def test_real_sampler_shows_ram_and_no_gpu(tmp_path: Path) -> None:
    app = make_app(tmp_path, sampler=Sampler(gpu_sources=[]))
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: panel.snapshot is not None)
        text = body(panel)
        assert "RAM" in text and "GiB" in text
        assert "no GPU" in text
        assert "app" in text and "CPU" in text
        assert panel.snapshot is not None and panel.snapshot.ram_total > 0


@pilot_test
async def test_live_rate_then_sparkline_ttft_and_ctx_bar(tmp_path: Path) -> None:
    engine = ScriptedEngine(LONG, delay_s=0.004)
    sampler = FakeSampler()
    app = make_app(tmp_path, engine=engine, sampler=sampler)
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await send(pilot, "go", wait=False)
        # while it streams, the panel shows a live rate from the reply's deltas
        await wait_for(pilot, lambda: app.rates.snapshot().streaming
                       and app.rates.snapshot().live_tokens_per_s > 0)
        await wait_for(pilot, lambda: "tok/s" in body(panel) and chat(app).pane.job is not None)
        await wait_for(pilot, lambda: chat(app).pane.job is None, timeout=20)
        await pilot.pause(0.1)
        text = body(panel)
        assert "tok/s" in text and "ttft" in text
        assert "8k" in text and ("█" in text or "░" in text)  # the ctx bar
        assert len(app.rates.history) == 1
        assert any(ch in text for ch in "▁▂▃▄▅▆▇█")  # the sparkline of recent replies
        assert sampler.samples > 0
        # usage recorded per model in the profiles table
        rows = app.store.table("profiles").all()
        assert rows[0]["name"] == "scripted" and rows[0]["usage"]["replies"] == 1


@pilot_test
async def test_collapse_toggle_and_no_sampling_while_collapsed(tmp_path: Path) -> None:
    sampler = FakeSampler()
    app = make_app(tmp_path, sampler=sampler)
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: sampler.samples > 0)
        width = panel.outer_size.width
        await pilot.press("f12")
        await pilot.pause()
        assert panel.collapsed and panel.outer_size.width < width
        assert not panel.query_one("#monitor-body").display
        count = sampler.samples
        await pilot.pause(1.3)
        assert sampler.samples == count
        await pilot.press("f12")
        await pilot.pause()
        assert not panel.collapsed and panel.outer_size.width == width


@pilot_test
async def test_80x24_shows_one_status_line_and_f12_lays_the_panel_over(tmp_path: Path) -> None:
    sampler = FakeSampler()
    app = make_app(tmp_path, sampler=sampler)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await send(pilot, "hi")
        await wait_for(pilot, lambda: panel.snapshot is not None)
        await pilot.pause(0.1)
        # one line under the chat: model, RAM, tok/s, ctx
        assert panel.display and panel.region.height == 1 and panel.region.width == 80
        line = body(panel)
        assert line.startswith("scripted · RAM 6.0/16.0 GiB · ")
        reply = app.store.messages(chat(app).meta.id)[-1]
        assert reply.stats is not None
        used = reply.stats["prompt_tokens"] + reply.stats["generated_tokens"]
        assert f"tok/s · ctx {used}/8k" in line and "f12: monitor" in line
        pane = chat(app).pane
        pane_region = pane.region
        await pilot.press("f12")  # the full panel, over the chat (which keeps its width)
        await pilot.pause()
        assert panel.overlay and panel.region.width == 30 and panel.region.height > 10
        assert pane.region.width == pane_region.width
        assert "ttft" in body(panel) and "CPU" in body(panel)
        await pilot.press("f12")
        await pilot.pause()
        assert not panel.overlay and panel.region.height == 1
        assert len(app.store.messages(chat(app).meta.id)) == 2


@pilot_test
async def test_each_model_memory_row_names_its_model(tmp_path: Path) -> None:
    sampler = FakeSampler()
    sampler.watch(1001, "smollm2-135m")
    sampler.watch(1002, "gemma-3-270m-it-q4_k_m-long")
    app = make_app(tmp_path, sampler=sampler)
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: panel.snapshot is not None)
        await pilot.pause(0.1)
        rows = [line for line in body(panel).splitlines() if line.startswith(" model")]
        assert rows == [" model 212 MiB smollm2-135m", " model 212 MiB gemma-3-270m…"]


@pilot_test
async def test_after_a_compare_the_monitor_shows_its_figures(tmp_path: Path) -> None:
    """A compare run's reply keeps its figures per model: the monitor shows the first's, not
    the 0.0 tok/s / 0.00 s / 0 tokens of a reply without top-level figures."""
    from tests.app_fixtures import export_data

    data = export_data("Compared", 1)
    figures = {"generated_tokens": 40, "generation_tokens_per_s": 55.5,
               "time_to_first_token_s": 0.31, "prompt_tokens": 20, "stop_reason": "stop"}
    data["messages"][1]["stats"] = {"compare": {
        "models": ["a", "b"], "mode": "together",
        "results": [{"model": "a", "text": "x", **figures},
                    {"model": "b", "text": "y", **figures, "generation_tokens_per_s": 9.0}]}}
    store = Store.open(tmp_path / "data")
    store.import_json(data)
    app = make_app(tmp_path, store=store)
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: panel.snapshot is not None)
        await pilot.pause(0.1)
        text = body(panel)
        assert "55.5 tok/s" in text and "0.31 s" in text and "60/8k" in text


def test_worker_pids_are_watched(tmp_path: Path) -> None:
    from tui.engine.protocol import LoadParams
    from tui.session.choice import ResolvedModel
    from tui.session.model_session import ModelReady, ModelSession, ModelUnloaded
    from tui.store import LocalModel

    events: list[object] = []
    engine = ScriptedEngine("x")
    session = ModelSession(lambda _p: engine, listener=events.append)
    model = ResolvedModel(LocalModel("a.gguf", "a"), "a.gguf", "a",
                          params=LoadParams(model_path="a.gguf"))
    entry = session.switch(model)
    assert session.current is entry
    assert isinstance(events[-1], ModelReady) and events[-1].loaded is entry
    # a scripted engine has no worker process (pid 0): nothing to watch
    assert entry.info.worker_pid == 0
    assert session.unload("a.gguf") and session.current is None
    assert isinstance(events[-1], ModelUnloaded) and events[-1].worker_pid == 0
    Store.open(tmp_path / "d").close()


@pilot_test
async def test_new_figures_on_the_same_rows_are_drawn_without_a_layout(tmp_path: Path) -> None:
    """A sample (each second, also while a reply streams) repaints the panel alone: a layout
    pass would move and redraw every widget on the screen, CPU taken from the model."""
    sampler = FakeSampler()
    app = make_app(tmp_path, sampler=sampler)
    async with app.run_test(size=(140, 40)) as pilot:
        panel = chat(app).query_one(MonitorPanel)
        await wait_for(pilot, lambda: panel.snapshot is not None)
        await pilot.pause()
        shown = panel.query_one("#monitor-body")
        layouts: list[bool] = []
        update = shown.update  # type: ignore[attr-defined]

        def recording(*args: object, layout: bool = True, **kwargs: object) -> object:
            layouts.append(layout)
            return update(*args, layout=layout, **kwargs)

        shown.update = recording  # type: ignore[attr-defined]
        snapshot = sampler.sample()
        panel.post_message(MonitorPanel.Sampled(
            dataclasses.replace(snapshot, cpu_percent=snapshot.cpu_percent + 40)))
        await wait_for(pilot, lambda: "47%" in body(panel))
        assert layouts == [False]
        # one more row (a second model worker): the panel's height changes, a layout it is
        panel.post_message(MonitorPanel.Sampled(dataclasses.replace(
            snapshot, workers=(*snapshot.workers, ProcessSample(42, "second", 1 << 20, 0.0)))))
        await wait_for(pilot, lambda: "second" in body(panel))
        assert layouts == [False, True]
