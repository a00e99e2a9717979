"""The model worker: a spawned process that owns one ``llama_cpp.Llama`` and serves the protocol.

Only this module imports llama_cpp, and only inside the worker process. A native abort here
kills the worker alone; the caller sees the pipe close and reports it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from tui.engine.protocol import (
    CancelRequest,
    ChatMessage,
    Done,
    GenerateRequest,
    GenerationStats,
    Loaded,
    LoadParams,
    LoadRequest,
    ModelInfo,
    Request,
    StopReason,
    TextDelta,
    TokenCount,
    TokenizeRequest,
    UnloadRequest,
    WorkerError,
)


def worker_main(conn: Connection, log_path: str | None = None) -> None:
    """Entry point of the worker process.

    llama.cpp writes to file descriptors 1 and 2 from native code; in a full-screen app that
    would scribble over the screen, so both go to ``log_path`` (the caller reads its tail to
    explain a crash).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when we stop
    from tui.offline import install_from_env

    install_from_env()  # a worker never needs the network: refuse it as the caller does
    if log_path:
        _redirect_output(log_path)
    try:
        _Worker(conn).serve()
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the caller went away: nothing left to serve
    except Exception as exc:  # a bug of ours: say so in one line rather than a traceback
        with contextlib.suppress(OSError):
            conn.send(WorkerError(f"internal error in the model worker: {exc!r}"))
        traceback.print_exc()  # into the log, for a bug report


def _redirect_output(log_path: str) -> None:
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class _Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.llm: Any = None
        self.info: ModelInfo | None = None
        self.formatter: Any = None
        self.pending: deque[Request] = deque()

    def next_request(self) -> Request:
        if self.pending:
            return self.pending.popleft()
        request: Request = self.conn.recv()
        return request

    def serve(self) -> None:
        while True:
            request = self.next_request()
            if isinstance(request, LoadRequest):
                if not self.load(request.params):
                    return
            elif isinstance(request, GenerateRequest):
                if not self.generate(request):
                    return
            elif isinstance(request, TokenizeRequest):
                self.tokenize(request)
            elif isinstance(request, UnloadRequest):
                return
            # a CancelRequest for a generation that already ended needs nothing

    # --- load ----------------------------------------------------------------------------

    def load(self, params: LoadParams) -> bool:
        start = time.perf_counter()
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            self.conn.send(WorkerError(f"llama-cpp-python is missing ({exc}): run scripts/install"))
            return False
        if params.lora_path and not os.path.isfile(params.lora_path):
            self.conn.send(WorkerError(f"the LoRA adapter {params.lora_path} does not exist: "
                                       "give the path of a LoRA GGUF file"))
            return False
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu_layers = params.n_gpu_layers
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu else 0
        flash_attn = params.flash_attn
        if flash_attn is None:
            flash_attn = gpu and n_gpu_layers != 0
        n_threads = params.n_threads or 1
        n_threads_batch = params.n_threads_batch or n_threads
        try:
            self.llm = llama_cpp.Llama(
                model_path=params.model_path,
                n_ctx=params.n_ctx or 0,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                n_gpu_layers=n_gpu_layers,
                n_batch=params.n_batch,
                flash_attn=flash_attn,
                seed=params.seed,
                lora_path=params.lora_path,
                verbose=False,
            )
        except Exception as exc:  # llama_cpp raises ValueError and friends, with terse text
            self.conn.send(WorkerError(_load_failure(params.model_path, exc)))
            return False
        meta = dict(self.llm.metadata)
        arch = meta.get("general.architecture", "unknown")
        template = meta.get("tokenizer.chat_template") or None
        if template:
            vocab = self.llm._model
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_get_text(self.llm.token_eos()),
                bos_token=vocab.token_get_text(self.llm.token_bos()),
                stop_token_ids=[self.llm.token_eos()],
            )
        self.info = ModelInfo(
            path=params.model_path,
            name=str(meta.get("general.name") or os.path.basename(params.model_path)),
            architecture=arch,
            n_ctx=self.llm.n_ctx(),
            n_ctx_train=self.llm._model.n_ctx_train(),
            n_layers=int(meta.get(f"{arch}.block_count", 0) or 0),
            n_params=int(self.llm._model.n_params()),
            size_bytes=int(self.llm._model.size()),
            chat_template=template,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            n_gpu_layers=n_gpu_layers,
            flash_attn=bool(flash_attn),
            gpu_backend=gpu,
            load_seconds=time.perf_counter() - start,
            worker_pid=os.getpid(),
        )
        self.conn.send(Loaded(self.info))
        return True

    # --- prompts -------------------------------------------------------------------------

    def prompt_tokens(
        self, messages: tuple[ChatMessage, ...], raw_prompt: str | None
    ) -> tuple[list[int], list[str]]:
        """Tokens of the prompt and extra stop strings for this request."""
        if raw_prompt is not None:
            return self.llm.tokenize(raw_prompt.encode("utf-8"), add_bos=True, special=False), []
        if self.formatter is None:
            text, stops = plain_transcript(messages)
            return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False), stops
        # a last assistant message is a reply to continue: the turns before it, the template's
        # opening of the assistant turn, then its text as it stands (no end-of-turn marker)
        head, partial = continued(messages)
        result = self.formatter(messages=[{"role": m.role, "content": m.content} for m in head])
        tokens = self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        if partial:
            tokens += self.llm.tokenize(partial.encode("utf-8"), add_bos=False, special=False)
        stops = [result.stop] if isinstance(result.stop, str) else list(result.stop or [])
        return tokens, stops

    def tokenize(self, request: TokenizeRequest) -> None:
        if self.llm is None:
            self.conn.send(WorkerError("no model loaded", request.request_id))
            return
        if request.messages:
            tokens, _ = self.prompt_tokens(request.messages, None)
        else:
            tokens = self.llm.tokenize(request.text.encode("utf-8"), add_bos=False, special=False)
        self.conn.send(TokenCount(request.request_id, len(tokens)))

    # --- generation ----------------------------------------------------------------------

    def generate(self, req: GenerateRequest) -> bool:
        """Stream one reply. Returns False when the caller asked the worker to go away."""
        rid = req.request_id
        start = time.perf_counter()
        llm = self.llm
        if llm is None:
            self.conn.send(Done(rid, "", _empty_stats("error"), "no model loaded"))
            return True
        tokens, stops = self.prompt_tokens(req.messages, req.raw_prompt)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx:
            message = (
                f"the prompt is {len(tokens):,} tokens but the context window holds {n_ctx:,}: "
                "shorten it, start a new conversation, or load the model with a larger n_ctx"
            )
            self.conn.send(Done(rid, "", _empty_stats("error", len(tokens)), message))
            return True
        reused = _common_prefix(llm._input_ids[: llm.n_tokens], tokens[:-1])
        s = req.sampling
        _perf_reset(llm)
        stream = llm.create_completion(
            prompt=tokens,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            stop=list(s.stop) + stops,
            seed=s.seed,
            stream=True,
        )
        parts: list[str] = []
        first: float | None = None
        chunks = 0
        reason: StopReason = "stop"
        keep_serving = True
        error: str | None = None
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice["text"]
                chunks += 1
                if text:
                    if first is None:
                        first = time.perf_counter() - start
                    parts.append(text)
                    self.conn.send(TextDelta(rid, text))
                if choice.get("finish_reason") == "length":
                    reason = "length"
                if self.conn.poll():
                    stop, keep_serving = self.check_inbox(rid)
                    if stop:
                        reason = "cancelled"
                        break
        except Exception as exc:  # a failure inside llama.cpp mid-reply: keep what we have
            reason, error = "error", f"generation failed: {exc}"
        finally:
            stream.close()
        elapsed = time.perf_counter() - start
        # every sampled token but the last was fed back into the context
        n_generated = max(llm.n_tokens - len(tokens), 0) + 1 if chunks else 0
        stats = _stats(llm, len(tokens), reused, n_generated, first, elapsed, reason)
        self.conn.send(Done(rid, "".join(parts), stats, error))
        return keep_serving

    def check_inbox(self, rid: int) -> tuple[bool, bool]:
        """Read requests that arrived mid-reply: (stop this reply?, keep serving?)."""
        stop, keep_serving = False, True
        while self.conn.poll():
            request: Request = self.conn.recv()
            if isinstance(request, CancelRequest):
                stop = stop or request.request_id == rid
            elif isinstance(request, UnloadRequest):
                stop, keep_serving = True, False
            else:
                self.pending.append(request)
        return stop, keep_serving


def continued(messages: tuple[ChatMessage, ...]) -> tuple[tuple[ChatMessage, ...], str]:
    """(the messages to render, the reply text to continue): a conversation that ends with an
    assistant message asks for more of that message, not for a new one."""
    if len(messages) > 1 and messages[-1].role == "assistant":
        return messages[:-1], messages[-1].content
    return messages, ""


def plain_transcript(messages: tuple[ChatMessage, ...]) -> tuple[str, list[str]]:
    """A prompt for a base model (no chat template): the text itself, or a simple transcript."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content, []
    head, partial = continued(messages)
    lines = []
    for m in head:
        if m.role == "system":
            lines.append(m.content + "\n")
        else:
            lines.append(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}\n")
    lines.append(f"Assistant: {partial}" if partial else "Assistant:")
    return "".join(lines), ["\nUser:"]


def _common_prefix(a: Any, b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _perf_reset(llm: Any) -> None:
    try:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    except (AttributeError, ImportError):
        pass


def _stats(
    llm: Any,
    prompt_tokens: int,
    reused: int,
    n_generated: int,
    first: float | None,
    elapsed: float,
    reason: StopReason,
) -> GenerationStats:
    evaluated = max(prompt_tokens - reused, 0)
    prompt_rate = gen_rate = 0.0
    try:
        import llama_cpp

        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        if perf.n_p_eval and perf.t_p_eval_ms > 0:
            prompt_rate = perf.n_p_eval / (perf.t_p_eval_ms / 1000)
            evaluated = int(perf.n_p_eval)
        if perf.n_eval and perf.t_eval_ms > 0:
            gen_rate = perf.n_eval / (perf.t_eval_ms / 1000)
    except (AttributeError, ImportError):
        pass
    ttft = first if first is not None else elapsed
    if gen_rate == 0.0 and n_generated > 1 and elapsed > ttft:
        gen_rate = (n_generated - 1) / (elapsed - ttft)
    return GenerationStats(
        prompt_tokens=prompt_tokens,
        prompt_tokens_per_s=prompt_rate,
        generated_tokens=n_generated,
        generation_tokens_per_s=gen_rate,
        time_to_first_token_s=ttft,
        reused_tokens=max(prompt_tokens - evaluated, 0),
        evaluated_prompt_tokens=evaluated,
        stop_reason=reason,
        total_seconds=elapsed,
    )


def _empty_stats(reason: StopReason, prompt_tokens: int = 0) -> GenerationStats:
    return GenerationStats(prompt_tokens, 0.0, 0, 0.0, 0.0, 0, 0, reason, 0.0)


def _load_failure(path: str, exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"llama.cpp could not load {path} ({detail}): the file may be damaged, of an "
        "architecture this llama.cpp build does not know, or too big for free memory"
    )
