"""The model worker: a spawned process that owns one model and context and serves the protocol.

Only this process imports llama_cpp (through tui.engine.native). A native abort here kills
the worker alone; the caller sees the pipe close and reports it. Requests are read on a
thread of their own, so a cancel reaches a running reply (or a long prompt evaluation) at
once instead of waiting for the next token.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.engine.generation import CancelFlag, Generator
from tui.engine.protocol import (
    CancelRequest,
    Done,
    Embeddings,
    EmbedRequest,
    GenerateRequest,
    GenerationStats,
    Loaded,
    LoadParams,
    LoadRequest,
    ModelInfo,
    Request,
    SamplingParams,
    TokenCount,
    TokenizeRequest,
    UnloadRequest,
    WorkerError,
    WorkerEvent,
)
from tui.i18n import Language, _, set_language

if TYPE_CHECKING:
    from tui.engine.cores import CoreShare
    from tui.engine.embedding import TextEmbedder
    from tui.engine.kv_state import StateStore
    from tui.engine.native import NativeContext, NativeModel


def worker_main(conn: Connection, log_path: str | None = None,
                language: Language | None = None) -> None:
    """Entry point of the worker process.

    llama.cpp writes to file descriptors 1 and 2 from native code; in a full-screen app that
    would scribble over the screen, so both go to ``log_path`` (the caller reads its tail to
    explain a crash). ``language`` is the caller's: the worker's errors are said in it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when we stop
    if language is not None:
        set_language(language)
    from tui.offline import install_from_env

    install_from_env()  # a worker never needs the network: refuse it as the caller does
    if log_path:
        _redirect_output(log_path)
    try:
        _Worker(conn).serve()
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the caller went away: nothing left to serve
    except Exception as exc:  # a bug of ours: one line (never the request's text), the
        with contextlib.suppress(OSError):  # traceback into the private log
            conn.send(WorkerError(_("internal error in the model worker: {where}",
                                    where=_where(exc))))
        traceback.print_exc()


def _where(exc: BaseException) -> str:
    """The exception's type and where it was raised, without its message (which may quote
    a prompt)."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{place}"


def _redirect_output(log_path: str) -> None:
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class Inbox:
    """The caller's requests, read on a thread: cancels take effect mid-reply."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self.cancel = CancelFlag()
        self._lock = threading.Lock()
        self._current: int | None = None
        self._cancelled: set[int] = set()
        threading.Thread(target=self._read, name="lmdesk-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                request = self.conn.recv()
            except (EOFError, OSError):
                self.cancel.requested = True
                self.requests.put(None)  # the caller is gone
                return
            except Exception:  # a message that does not unpickle: skip it
                traceback.print_exc()
                continue
            if isinstance(request, CancelRequest):
                with self._lock:
                    self._cancelled.add(request.request_id)
                    if request.request_id == self._current:
                        self.cancel.requested = True
                continue
            if isinstance(request, UnloadRequest):
                self.cancel.requested = True
            self.requests.put(request)

    def begin(self, rid: int) -> CancelFlag:
        """A reply starts: a cancel sent before it was read still counts."""
        with self._lock:
            self._current = rid
            self.cancel = CancelFlag()
            self.cancel.requested = rid in self._cancelled
            self._cancelled.discard(rid)
            return self.cancel

    def end(self) -> None:
        with self._lock:
            self._current = None


class _Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.inbox = Inbox(conn)
        self.model: NativeModel | None = None
        self.ctx: NativeContext | None = None
        self.generator: Generator | None = None
        self.embedder: TextEmbedder | None = None
        self.params: LoadParams | None = None
        self.info: ModelInfo | None = None

    def send(self, event: WorkerEvent) -> None:
        self.conn.send(event)

    def serve(self) -> None:
        while True:
            request = self.inbox.requests.get()
            if request is None or isinstance(request, UnloadRequest):
                self.keep_state()
                return
            if isinstance(request, LoadRequest):
                if not self.load(request.params):
                    return
            elif isinstance(request, GenerateRequest):
                self.generate(request)
            elif isinstance(request, TokenizeRequest):
                self.tokenize(request)
            elif isinstance(request, EmbedRequest):
                self.embed(request)

    # --- load ----------------------------------------------------------------------------

    def load(self, params: LoadParams) -> bool:
        start = time.perf_counter()
        try:
            from tui.engine import native
            from tui.engine.chat_prompt import ChatTemplate, TemplateError
        except ImportError as exc:
            self.send(WorkerError(_("llama-cpp-python is missing ({exc}): run scripts/install",
                                    exc=exc)))
            return False
        if params.lora_path and not os.path.isfile(params.lora_path):
            self.send(WorkerError(_("the LoRA adapter {lora_path} does not exist: give the path "
                                    "of a LoRA GGUF file", lora_path=params.lora_path)))
            return False
        gpu = bool(native.gpu_devices())
        n_gpu_layers = params.n_gpu_layers
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu or params.rpc_servers else 0
        flash_attn = params.flash_attn
        n_threads = params.n_threads or 1
        n_threads_batch = params.n_threads_batch or n_threads
        tensor_split: tuple[float, ...] = ()
        if params.rpc_servers:
            from tui.engine.errors import ModelLoadError
            from tui.engine.rpc import attach

            try:
                tensor_split = attach(params.rpc_servers).tensor_split
            except ModelLoadError as exc:
                self.send(WorkerError(str(exc)))
                return False
        try:
            model = native.NativeModel(params.model_path, n_gpu_layers=n_gpu_layers,
                                       tensor_split=tensor_split)
        except (native.NativeError, OSError, RuntimeError) as exc:
            self.send(WorkerError(_load_failure(params.model_path, exc)))
            return False
        try:
            ctx = native.NativeContext(model, native.ContextOptions(
                n_ctx=params.n_ctx or min(model.n_ctx_train, 8192), n_batch=params.n_batch,
                n_threads=n_threads, n_threads_batch=n_threads_batch, flash_attn=flash_attn))
            if params.lora_path:
                ctx.set_lora(params.lora_path)
        except native.NativeError as exc:
            model.close()
            self.send(WorkerError(_load_failure(params.model_path, exc)))
            return False
        meta = model.metadata()
        source = params.chat_template or model.chat_template() or None
        template = None
        if source:
            try:
                template = ChatTemplate(
                    source, bos_token=model.piece(model.bos(), special=True).decode(
                        "utf-8", "replace"),
                    eos_token=model.piece(model.eos(), special=True).decode("utf-8", "replace"),
                )
            except TemplateError as exc:
                self.send(WorkerError(str(exc)))
                return False
        self.model, self.ctx, self.params = model, ctx, params
        self.generator = Generator(model, ctx, template, seed=params.seed,
                                   states=_state_store(params, ctx.n_ctx, flash_attn),
                                   cores=_core_share(params))
        arch = meta.get("general.architecture", "unknown")
        self.info = ModelInfo(
            path=params.model_path,
            name=str(meta.get("general.name") or os.path.basename(params.model_path)),
            architecture=arch,
            n_ctx=ctx.n_ctx,
            n_ctx_train=model.n_ctx_train,
            n_layers=model.n_layers(),
            n_params=model.n_params(),
            size_bytes=model.size(),
            chat_template=source,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            n_gpu_layers=n_gpu_layers,
            flash_attn=flash_attn,
            gpu_backend=gpu,
            load_seconds=time.perf_counter() - start,
            worker_pid=os.getpid(),
        )
        self.send(Loaded(self.info))
        return True

    def keep_state(self) -> None:
        """Leaving: the conversation the cache holds is saved for next time."""
        if self.generator is not None and self.generator.states is not None:
            try:
                self.generator.save_current(wait=True)
            except Exception:  # never let saving stand in the way of unloading
                traceback.print_exc()

    # --- requests ------------------------------------------------------------------------

    def generate(self, req: GenerateRequest) -> None:
        rid = req.request_id
        if self.generator is None:
            self.send(Done(rid, "", _empty_stats("error"), _("no model loaded")))
            return
        cancel = self.inbox.begin(rid)
        try:
            grammar = self.grammar_for(req)
            if isinstance(grammar, Done):
                self.send(grammar)
                return
            done = self.generator.run(req, self.send, cancel, grammar)
        except Exception as exc:  # a bug of ours mid-reply: the model stays usable
            traceback.print_exc()
            if self.ctx is not None:
                self.ctx.clear()
            done = Done(rid, "", _empty_stats("error"),
                        _("internal error in the model worker: {where}", where=_where(exc)))
        finally:
            self.inbox.end()
        self.send(done)

    def grammar_for(self, req: GenerateRequest) -> str | Done | None:
        s = req.sampling
        if s.grammar is not None:
            return s.grammar
        if s.json_schema is None:
            return None
        from tui.engine.structured import schema_grammar

        try:
            return schema_grammar(s.json_schema)
        except ValueError as exc:
            return Done(req.request_id, "", _empty_stats("error"), str(exc))

    def tokenize(self, request: TokenizeRequest) -> None:
        gen = self.generator
        if gen is None:
            self.send(WorkerError(_("no model loaded"), request.request_id))
            return
        from tui.engine.chat_prompt import TemplateError

        try:
            if request.messages:
                tokens = gen.plan(GenerateRequest(request.request_id, request.messages,
                                                  SamplingParams())).tokens
            else:
                tokens = gen.model.tokenize(request.text, add_special=False,
                                            parse_special=request.parse_special)
        except TemplateError as exc:
            self.send(WorkerError(str(exc), request.request_id))
            return
        ids = tuple(tokens) if request.return_ids else ()
        self.send(TokenCount(request.request_id, len(tokens), ids))

    def embed(self, request: EmbedRequest) -> None:
        if self.model is None or self.params is None:
            self.send(WorkerError(_("no model loaded"), request.request_id))
            return
        from tui.engine.embedding import TextEmbedder
        from tui.engine.native import NativeError

        try:
            if self.embedder is None:
                self.embedder = TextEmbedder(self.model, n_threads=self.params.n_threads or 1,
                                             n_threads_batch=self.params.n_threads_batch or 1)
            vectors, n_tokens = self.embedder.embed(request.texts)
        except NativeError as exc:
            self.send(WorkerError(_("embedding failed: {exc}", exc=exc), request.request_id))
            return
        self.send(Embeddings(request.request_id, vectors, n_tokens))


def _core_share(params: LoadParams) -> CoreShare | None:
    if not params.share_cores_dir:
        return None
    from tui.engine.cores import CoreShare as Share

    return Share(Path(params.share_cores_dir))


def _state_store(params: LoadParams, n_ctx: int, flash_attn: bool) -> StateStore | None:
    """Where this model's conversation states go; None when they are not kept."""
    if not params.kv_state_dir or params.kv_state_budget_mb <= 0:
        return None
    import llama_cpp

    from tui.engine.kv_state import StateStore as Store

    def stamp(path: str | None) -> list[object] | None:
        if not path:
            return None
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]

    identity = {
        "model": stamp(params.model_path), "lora": stamp(params.lora_path), "n_ctx": n_ctx,
        "flash_attn": flash_attn, "llama_cpp": getattr(llama_cpp, "__version__", ""),
    }
    return Store(Path(params.kv_state_dir), identity,
                      params.kv_state_budget_mb * 1024 * 1024)


def _empty_stats(reason: Any, prompt_tokens: int = 0) -> GenerationStats:
    return GenerationStats(prompt_tokens, 0.0, 0, 0.0, 0.0, 0, 0, reason, 0.0)


def _load_failure(path: str, exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        _("llama.cpp could not load {path} ({detail}): the file may be damaged, of an "
          "architecture this llama.cpp build does not know, or too big for free memory",
          path=path, detail=detail)
    )
