"""``lmdesk bench ui``: how fast the app's UI is, headless, with a fake engine.

Figures (targets in brackets):

- ``start_to_first_frame_s``: constructing the app to its first painted frame (≤ 1.0).
- ``burst_tokens_per_s``: an engine streaming a 5,000-token reply (prose, lists, code blocks)
  as fast as it can; tokens divided by the time from the first token until the whole reply is
  rendered (≥ 2,000).
- ``cost_ratio``: the same reply released ``batch`` tokens at a time, each batch waiting until
  the previous one is on screen; the whole app process's CPU time per token (every thread: the
  UI, the generation thread reading the engine, the collector; the fake engine costs nothing
  while it waits) over the last 10% of the batches divided by the first 10% (≤ 1.5: a long
  reply must not get slower to show as it grows). ``us_per_token_first`` and
  ``us_per_token_last`` are the two sides.
- ``open_2000_paint_ms``: opening a 2,000-message conversation until its first frame is painted
  (≤ 300), and ``open_2000_settled_ms`` until every visible reply has rendered its Markdown.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tui.config import Paths, Settings
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    TextDelta,
    ToolChoice,
    ToolSpec,
)
from tui.engine.scripted import ScriptedEngine

SIZE = (160, 48)
_TOKEN = re.compile(r"\s*\S+|\s+")

_SECTIONS = (
    "## Step {i}\n\nThis paragraph explains step {i} with **bold** words, some `inline code` "
    "and enough plain text that it wraps across more than one line of the chat pane.\n\n",
    "```python\ndef step_{i}(values: list[int]) -> int:\n    total = 0\n    for v in values:\n"
    "        total += v * {i}\n    return total\n\n\nprint(step_{i}([1, 2, 3]))\n```\n\n",
    "- first point about step {i}\n- second point, a little longer than the first\n"
    "- third point\n\n",
)


def reply_tokens(n: int) -> list[str]:
    """``n`` word-like tokens of Markdown: headings, prose, lists and code blocks."""
    tokens: list[str] = []
    i = 0
    while len(tokens) < n:
        for section in _SECTIONS:
            tokens.extend(_TOKEN.findall(section.format(i=i)))
        i += 1
    return tokens[:n]


class BenchEngine:
    """Streams fixed tokens as fast as possible, or (``batch`` set) ``batch`` tokens at a time,
    each batch waiting for ``release()``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self.batch: int | None = None
        self._gate = threading.Semaphore(0)
        self._cancel = threading.Event()
        self._loader = ScriptedEngine("", name="bench")

    @property
    def info(self) -> ModelInfo | None:
        return self._loader.info

    @property
    def alive(self) -> bool:
        return self._loader.alive

    def load(self) -> ModelInfo:
        return self._loader.load()

    def generate(
        self, messages: Sequence[ChatMessage], sampling: SamplingParams, *,
        raw_prompt: str | None = None, tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> Iterator[EngineEvent]:
        self._cancel.clear()
        start = time.perf_counter()
        first = 0.0
        sent = 0
        for sent, token in enumerate(self.tokens, 1):
            if self._cancel.is_set():
                break
            if self.batch and sent > 1 and (sent - 1) % self.batch == 0:
                self._gate.acquire()
            if sent == 1:
                first = time.perf_counter() - start
            yield TextDelta(0, token)
        elapsed = time.perf_counter() - start
        stats = GenerationStats(
            prompt_tokens=1, prompt_tokens_per_s=0.0, generated_tokens=sent,
            generation_tokens_per_s=sent / elapsed if elapsed else 0.0,
            time_to_first_token_s=first, reused_tokens=0, evaluated_prompt_tokens=1,
            stop_reason="stop", total_seconds=elapsed,
        )
        yield Done(0, "".join(self.tokens[:sent]), stats)

    def release(self) -> None:
        """Let the next batch go."""
        self._gate.release()

    def cancel(self) -> None:
        self._cancel.set()
        self._gate.release()

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        return self._loader.count_tokens(text, messages)

    def unload(self) -> None:
        self._loader.unload()


def _long_conversation(messages: int) -> dict[str, Any]:
    now = time.time()
    items: list[dict[str, Any]] = []
    for i in range(messages // 2):
        items.append({"role": "user", "content": f"Question {i}: how do I do thing {i}?",
                      "created": now})
        items.append({
            "role": "assistant", "created": now, "model": "bench",
            "content": f"Answer {i}, with **Markdown**:\n\n```python\nprint({i})\n```\n\nDone.",
            "stats": {"generated_tokens": 20, "generation_tokens_per_s": 50.0,
                      "time_to_first_token_s": 0.1, "prompt_tokens": 10},
        })
    return {"format": "lmdesk-conversation", "version": 1,
            "conversation": {"title": "Long conversation", "created": now, "updated": now - 1},
            "messages": items}


def _tenths(costs: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last 10% of ``costs``."""
    n = max(1, len(costs) // 10)
    return statistics.fmean(costs[:n]), statistics.fmean(costs[-n:])


async def _bench(
    out: Callable[[str], None], tokens: int, messages: int, batch: int, data: Path
) -> dict[str, float]:
    from tui.app.app import LmdeskApp
    from tui.app.screens.chat import ChatScreen
    from tui.store import Store

    results: dict[str, float] = {}
    paths = Paths(data / "data", data / "config", data / "cache")
    store = Store.open(paths.data_dir)
    long_id = store.import_json(_long_conversation(messages)).id
    engine = BenchEngine(reply_tokens(tokens))
    started = time.perf_counter()
    app = LmdeskApp(
        settings=Settings(max_tokens=tokens + 10), paths=paths, store=store,
        engine_factory=lambda _p: engine, model_path="bench.gguf", model_name="bench",
        show_welcome=False,
    )
    async with app.run_test(size=SIZE) as pilot:
        while app.first_frame_at is None:
            await asyncio.sleep(0.001)
        results["start_to_first_frame_s"] = app.first_frame_at - started
        out(f"start to first frame   {results['start_to_first_frame_s']:8.3f} s   (target ≤ 1.0)")
        while app.model_state == "loading":
            await pilot.pause(0.01)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        pane = screen.pane

        async def burst() -> float:
            """The whole reply as fast as the engine can: tokens shown per second."""
            await screen.new_conversation(quiet=True)
            engine.batch = None
            await pane.send("Write a long answer with code.")
            job = pane.job
            assert job is not None
            while pane.job is not None:
                await asyncio.sleep(0.005)
            await pilot.pause()
            done_at = time.perf_counter()
            first = job.first_token_at or done_at
            return job.tokens_shown / (done_at - first) if done_at > first else 0.0

        async def lockstep() -> list[float]:
            """``batch`` tokens at a time; the process's CPU time for each batch, from
            its arrival until it is on screen."""
            await screen.new_conversation(quiet=True)
            engine.batch = batch
            await pane.send("Write a long answer with code.")
            job = pane.job
            assert job is not None
            marks: list[float] = []
            shown = 0
            while shown < tokens:
                shown = min(tokens, shown + batch)
                while job.tokens_shown < shown:
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.03)  # a frame is drawn (idle time is not CPU time)
                marks.append(time.process_time())
                engine.release()
            while pane.job is not None:
                await asyncio.sleep(0.005)
            return [(b - a) / batch for a, b in itertools.pairwise(marks)]

        rate = await burst()
        results["burst_tokens_per_s"] = rate
        out(f"burst: tokens absorbed {rate:8.0f} tok/s (target ≥ 2,000; {tokens} tokens)")

        costs = await lockstep()
        first_cost, last_cost = _tenths(costs)
        results["us_per_token_first"] = first_cost * 1e6
        results["us_per_token_last"] = last_cost * 1e6
        results["cost_ratio"] = last_cost / first_cost if first_cost else 0.0
        out(f"app CPU per token, {batch} at a time: {first_cost * 1e6:.0f} µs over the first 10%, "
            f"{last_cost * 1e6:.0f} µs over the last 10%")
        out(f"cost ratio last/first   {results['cost_ratio']:8.2f}     (target ≤ 1.5)")

        await asyncio.sleep(1.5)  # the app's idle work after a reply (a deferred GC pass)
        painted = asyncio.Event()
        t0 = time.perf_counter()
        await screen.open_conversation(long_id)
        screen.call_after_refresh(painted.set)
        await painted.wait()
        results["open_2000_paint_ms"] = (time.perf_counter() - t0) * 1000
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        results["open_2000_settled_ms"] = (time.perf_counter() - t0) * 1000
        out(f"open {messages} messages: painted {results['open_2000_paint_ms']:.0f} ms "
            f"(target ≤ 300), settled {results['open_2000_settled_ms']:.0f} ms")
    store.close()
    return results


def run_ui_bench(
    out: Callable[[str], None] = print,
    *,
    tokens: int = 5000,
    messages: int = 2000,
    batch: int = 50,
) -> dict[str, float]:
    """Run the UI benchmark headless; print each figure with ``out`` and return them all."""
    with tempfile.TemporaryDirectory(prefix="lmdesk-bench-ui-") as tmp:
        return asyncio.run(_bench(out, tokens, messages, batch, Path(tmp)))


__all__ = ["BenchEngine", "reply_tokens", "run_ui_bench"]

