"""Reference generation loops in a process of their own, for ``lmdesk bench`` and the tests.

- ``native``: the worker's own loop (tui.engine.generation) called in-process: no pipe, no
  protocol, no caller. What the engine costs on top of it is the pipe and the caller.
- ``old``: llama-cpp-python's high-level ``Llama.create_completion`` on the same prompt
  tokens, the engine's generation path before the low-level loop (the baseline it must beat).

Both render and tokenize the prompt exactly as the worker does, so the three see the same
tokens. Each runs in a spawned process so that llama_cpp never loads into the caller.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from tui.engine.protocol import (
    ChatMessage,
    Done,
    GenerateRequest,
    LoadParams,
    SamplingParams,
    TextDelta,
    WorkerEvent,
)
from tui.i18n import _

Mode = Literal["native", "old"]


@dataclass(frozen=True)
class ReferenceRun:
    text: str
    deltas: int
    """Text events the consumer saw (chunks for the old loop)."""
    generated_tokens: int
    prompt_tokens_per_s: float
    time_to_first_token_s: float
    first_delta_s: float
    last_delta_s: float
    stop_reason: str
    tokens_after_first: int = 0
    """Tokens carried by the text events after the first one (the rate's numerator)."""


def _load(params: LoadParams, n_ctx: int | None = None) -> Any:
    from tui.engine.chat_prompt import ChatTemplate
    from tui.engine.generation import Generator
    from tui.engine.native import ContextOptions, NativeContext, NativeModel

    model = NativeModel(params.model_path, n_gpu_layers=params.n_gpu_layers or 0)
    ctx = NativeContext(model, ContextOptions(
        n_ctx=n_ctx or params.n_ctx or 2048, n_batch=params.n_batch,
        n_threads=params.n_threads or 1, n_threads_batch=params.n_threads_batch or 1,
        flash_attn=params.flash_attn))
    source = params.chat_template or model.chat_template()
    template = None
    if source:
        template = ChatTemplate(
            source, bos_token=model.piece(model.bos(), special=True).decode("utf-8", "replace"),
            eos_token=model.piece(model.eos(), special=True).decode("utf-8", "replace"))
    return Generator(model, ctx, template, seed=params.seed)


def _native_run(gen: Any, req: GenerateRequest) -> ReferenceRun:
    from tui.engine.generation import CancelFlag

    stamps: list[float] = []
    counts: list[int] = []
    start = time.perf_counter()

    def record(event: WorkerEvent) -> None:
        if isinstance(event, TextDelta):
            stamps.append(time.perf_counter())
            counts.append(event.n_tokens)

    done: Done = gen.run(req, record, CancelFlag())
    return ReferenceRun(
        done.text, len(stamps), done.stats.generated_tokens, done.stats.prompt_tokens_per_s,
        done.stats.time_to_first_token_s, (stamps[0] - start) if stamps else 0.0,
        (stamps[-1] - start) if stamps else 0.0, done.stats.stop_reason, sum(counts[1:]))


def _old_run(llm: Any, gen: Any, req: GenerateRequest) -> ReferenceRun:
    """The engine's previous loop, as its worker called it."""
    import llama_cpp

    s = req.sampling
    plan = gen.plan(req)
    start = time.perf_counter()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    stream = llm.create_completion(
        prompt=plan.tokens, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
        top_k=s.top_k, min_p=s.min_p, repeat_penalty=s.repeat_penalty,
        presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty,
        stop=list(s.stop) + plan.stops, seed=s.seed, stream=True,
    )
    parts: list[str] = []
    stamps: list[float] = []
    finish = "stop"
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["text"]:
            stamps.append(time.perf_counter())
            parts.append(choice["text"])
        if choice.get("finish_reason"):
            finish = str(choice["finish_reason"])
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    prompt_rate = perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms > 0 else 0.0
    # tokens fed back after the prompt, plus the last one sampled when it was not the end
    decoded = int(llm.n_tokens) - len(plan.tokens)
    generated = decoded + (1 if finish == "length" else 0)
    return ReferenceRun(
        "".join(parts), len(stamps), generated, prompt_rate,
        (stamps[0] - start) if stamps else 0.0, (stamps[0] - start) if stamps else 0.0,
        (stamps[-1] - start) if stamps else 0.0, finish, max(len(stamps) - 1, 0))


def reference_main(conn: Connection, params: LoadParams, mode: Mode) -> None:
    """Load, say "ready", then answer each (messages, sampling) with a ReferenceRun."""
    gen = _load(params, 256 if mode == "old" else None)  # "old" only tokenizes with it
    llm = None
    if mode == "old":
        import llama_cpp

        llm = llama_cpp.Llama(
            model_path=params.model_path, n_ctx=params.n_ctx or 2048,
            n_threads=params.n_threads, n_threads_batch=params.n_threads_batch,
            n_gpu_layers=params.n_gpu_layers or 0, n_batch=params.n_batch,
            flash_attn=params.flash_attn, seed=params.seed, verbose=False,
        )
    conn.send("ready")
    rid = 0
    while True:
        request = conn.recv()
        if request is None:
            return
        messages, sampling = request
        rid += 1
        req = GenerateRequest(rid, tuple(messages), sampling)
        conn.send(_old_run(llm, gen, req) if llm is not None else _native_run(gen, req))


class Reference:
    """A reference loop in its own process: ``run`` one reply at a time."""

    def __init__(self, params: LoadParams, mode: Mode) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc: BaseProcess = ctx.Process(
            target=reference_main, args=(child, params, mode), name=f"lmdesk-ref-{mode}",
            daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(300) or self._conn.recv() != "ready":
            self.close()
            raise RuntimeError(_("the {mode} reference process did not start", mode=mode))

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def run(self, messages: Sequence[ChatMessage], sampling: SamplingParams) -> ReferenceRun:
        self._conn.send((list(messages), sampling))
        result: ReferenceRun = self._conn.recv()
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=2)
        self._conn.close()

    def __enter__(self) -> Reference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
