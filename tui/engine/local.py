"""LocalEngine: a model in its own worker process (multiprocessing, spawn), driven over a pipe."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tui.engine.errors import (
    EngineError,
    InvalidParameter,
    ModelLoadError,
    ToolsUnsupported,
    WorkerDied,
)
from tui.engine.gguf import GGUFError, GGUFHeader, read_header
from tui.engine.protocol import (
    DEFAULT_CTX_CAP,
    CancelRequest,
    ChatMessage,
    Done,
    Embeddings,
    EmbedRequest,
    EngineEvent,
    GenerateRequest,
    GenerationStats,
    Loaded,
    LoadParams,
    LoadRequest,
    ModelInfo,
    ReasoningDelta,
    Request,
    SamplingParams,
    TextDelta,
    TokenCount,
    TokenizeRequest,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    UnloadRequest,
    WorkerError,
    WorkerEvent,
)
from tui.engine.tool_calls import ToolChoiceError, family_for_template, forced_name, no_tool_support
from tui.i18n import _, current_language
from tui.spawn import stdio_with_file_descriptors

CTX_PAD = 256


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def resolve_load_params(params: LoadParams) -> LoadParams:
    """Validate ``params`` and the file, and fill in the defaults the caller can decide.

    Raises ``InvalidParameter`` or ``ModelLoadError`` with a one-line message.
    """
    params.validate()
    _require_regular_file(params.model_path)
    try:
        header = read_header(params.model_path)
    except GGUFError as exc:
        raise ModelLoadError(str(exc)) from None
    trained = header.context_length
    n_ctx = params.n_ctx or min(trained or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
    if trained and n_ctx > trained and not params.allow_ctx_beyond_train:
        raise InvalidParameter(
            _("n_ctx {n_ctx:,} is beyond the {trained:,} tokens {name} was trained on; its KV "
              "cache alone would need {gib}: use n_ctx <= {trained:,} "
              "(LoadParams.allow_ctx_beyond_train forces it)",
              n_ctx=n_ctx, trained=trained, name=header.name,
              gib=_gib(kv_cache_bytes(header, n_ctx)))
        )
    # llama.cpp pads the context to a multiple of 256; asking for that size up front keeps
    # llama-cpp-python's own buffers the same size as the real context
    n_ctx = -(-n_ctx // CTX_PAD) * CTX_PAD
    n_threads = params.n_threads or physical_cores()
    n_threads_batch = params.n_threads_batch or os.cpu_count() or n_threads
    return replace(params, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch)


def kv_cache_bytes(header: GGUFHeader, n_ctx: int) -> int:
    """Keys and values in f16 for every layer over ``n_ctx`` tokens."""
    per_token = header.n_kv_heads * (header.key_length + header.value_length) * 2
    return header.n_layers * n_ctx * per_token


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def _require_regular_file(path: str) -> None:
    """A FIFO, a device or a folder is not a model file: say so before anything opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the header reader says which
    if stat.S_ISDIR(mode):
        raise ModelLoadError(_("{path} is a folder, not a model file: give a .gguf file",
                               path=path))
    if not stat.S_ISREG(mode):
        kind = _("a FIFO (named pipe)") if stat.S_ISFIFO(mode) else _("a device or socket")
        raise ModelLoadError(_("{path} is {kind}, not a regular file: give a .gguf file",
                               path=path, kind=kind))


class LocalEngine:
    """One model, one worker process. Thread-safe: ``cancel`` may come from any thread."""

    def __init__(
        self,
        params: LoadParams,
        *,
        load_timeout_s: float = 600.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.params = params
        self.log_path = str(log_path) if log_path is not None else _default_log_path()
        self._load_timeout_s = load_timeout_s
        self._info: ModelInfo | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._use_lock = threading.Lock()  # one generation or tokenize at a time
        self._load_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._current: int | None = None

    # --- state ---------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive() and self._info is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- life cycle ----------------------------------------------------------------------

    def load(self) -> ModelInfo:
        """Start the worker and load the model; raise ``EngineError`` with a clear message.

        Two loads asked at once (two threads) start one worker: the second waits and gets the
        first one's model."""
        with self._load_lock:
            return self._load()

    def _load(self) -> ModelInfo:
        if self.alive and self._info is not None:
            return self._info
        self.params = resolve_load_params(self.params)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        from tui.engine.worker import worker_main

        proc = ctx.Process(
            target=worker_main, args=(child, self.log_path, current_language()),
            name="lmdesk-model", daemon=True
        )
        with stdio_with_file_descriptors():
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        try:
            self._send(LoadRequest(self.params))
            event = self._recv(timeout_s=self._load_timeout_s)
        except WorkerDied as exc:
            self._reap()
            gone = self._rpc_gone()
            if gone:
                raise ModelLoadError(_("the RPC worker {join} stopped answering while the model "
                                       "loaded: load it without that worker, or start the "
                                       "worker again", join=', '.join(gone))) from None
            raise ModelLoadError(
                _("the model worker crashed while loading {model_path} ({exc}{log_hint}); the "
                  "file may be damaged or need more memory than is free",
                  model_path=self.params.model_path, exc=exc, log_hint=self._log_hint())
            ) from None
        except TimeoutError:
            self._reap()
            raise ModelLoadError(
                _("loading {model_path} took over {load_timeout_s:.0f} s; gave up",
                  model_path=self.params.model_path, load_timeout_s=self._load_timeout_s)
            ) from None
        if isinstance(event, WorkerError):
            self._reap()
            raise ModelLoadError(event.message)
        if not isinstance(event, Loaded):
            self._reap()
            raise ModelLoadError(_("unexpected answer from the model worker: {event!r}",
                                   event=event))
        self._info = event.info
        return event.info

    def unload(self) -> None:
        """Stop the worker; all of the model's memory goes with it."""
        if self._proc is None:
            return
        with contextlib.suppress(EngineError, OSError):
            self._send(UnloadRequest())
        self._proc.join(timeout=5)
        self._reap()

    def _check_tools(self, tools: Sequence[ToolSpec], choice: ToolChoice) -> None:
        """Before anything is sent: a choice naming no offered tool, or a model whose template
        cannot take tools while it may choose ("auto"), is one EngineError line."""
        try:
            forced = forced_name(choice, tools)
        except ToolChoiceError as exc:
            raise EngineError(str(exc)) from None
        info = self.info
        if (forced is None and info is not None
                and family_for_template(info.chat_template) == "generic"):
            raise ToolsUnsupported(no_tool_support(info.name))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """For tests and emergencies: kill the worker outright."""
        if self._proc is not None and self._proc.pid is not None:
            os.kill(self._proc.pid, sig)

    def __enter__(self) -> LocalEngine:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()

    # --- requests ------------------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingParams,
        *,
        raw_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> Iterator[EngineEvent]:
        """Stream a reply: delta events, then one ``Done`` (also on failure)."""
        if tools and tool_choice != "none":
            self._check_tools(tools, tool_choice)
        sampling.validate()
        with self._use_lock:
            rid = next(self._ids)
            parts: list[str] = []
            try:
                self._require_loaded()
                self._current = rid
                self._send(GenerateRequest(rid, tuple(messages), sampling, raw_prompt,
                                           tuple(tools), tool_choice))
                while True:
                    event = self._recv()
                    if isinstance(event, TextDelta) and event.request_id == rid:
                        parts.append(event.text)
                        yield event
                    elif (isinstance(event, ReasoningDelta | ToolCallDelta)
                          and event.request_id == rid):
                        yield event
                    elif isinstance(event, Done) and event.request_id == rid:
                        yield event
                        return
                    elif isinstance(event, WorkerError):
                        yield _failed(rid, parts, event.message)
                        return
            except WorkerDied as exc:
                self._reap()
                yield _failed(rid, parts, self._died_mid_reply(exc))
            except EngineError as exc:
                yield _failed(rid, parts, str(exc))
            finally:
                self._current = None

    def cancel(self) -> None:
        rid = self._current
        if rid is not None:
            with contextlib.suppress(EngineError, OSError):
                self._send(CancelRequest(rid))

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        """Tokens in ``text``, or in the chat-formatted prompt of ``messages``."""
        return self._tokenize(TokenizeRequest(0, text, tuple(messages))).count

    def tokenize(self, text: str = "", messages: Sequence[ChatMessage] = (), *,
                 special: bool = False) -> list[int]:
        """The token ids of ``text`` (special tokens parsed only with ``special``), or of the
        chat-formatted prompt of ``messages`` exactly as a reply would see it."""
        request = TokenizeRequest(0, text, tuple(messages), return_ids=True,
                                  parse_special=special)
        return list(self._tokenize(request).ids)

    def _tokenize(self, request: TokenizeRequest) -> TokenCount:
        with self._use_lock:
            self._require_loaded()
            rid = next(self._ids)
            self._send(replace(request, request_id=rid))
            while True:
                event = self._recv()
                if isinstance(event, TokenCount) and event.request_id == rid:
                    return event
                if isinstance(event, WorkerError):
                    raise EngineError(event.message)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text (see tui.engine.embedding)."""
        if not texts:
            return []
        with self._use_lock:
            self._require_loaded()
            rid = next(self._ids)
            try:
                self._send(EmbedRequest(rid, tuple(texts)))
                while True:
                    event = self._recv()
                    if isinstance(event, Embeddings) and event.request_id == rid:
                        return [list(v) for v in event.vectors]
                    if isinstance(event, WorkerError):
                        raise EngineError(event.message)
            except WorkerDied as exc:
                self._reap()
                raise EngineError(_("the model worker died while embedding ({exc}{log_hint}); "
                                    "reload the model to go on",
                                    exc=exc, log_hint=self._log_hint())) from None

    # --- plumbing ------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if not self.alive:
            raise EngineError(_("no model is loaded (the worker is not running): load it first"))

    def _send(self, request: Request) -> None:
        conn = self._conn
        if conn is None:
            raise EngineError(_("no model worker is running"))
        with self._send_lock:
            try:
                conn.send(request)
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise WorkerDied(self._exit_description()) from None

    def _recv(self, timeout_s: float | None = None) -> WorkerEvent:
        conn = self._conn
        if conn is None:
            raise WorkerDied(_("no worker"))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while deadline is not None and not conn.poll(0.25):
                if time.monotonic() > deadline:
                    raise TimeoutError
            event: WorkerEvent = conn.recv()
            return event
        except (EOFError, ConnectionResetError, OSError):
            raise WorkerDied(self._exit_description()) from None

    def _exit_description(self) -> str:
        proc = self._proc
        if proc is None:
            return _("no worker")
        proc.join(timeout=1)
        code = proc.exitcode
        if code is None:
            return _("its pipe closed")
        if code == -signal.SIGILL:
            return (
                _("killed by SIGILL: this llama.cpp build uses CPU instructions this machine "
                  "refuses; rebuild it with `bash scripts/install`")
            )
        if code < 0:
            try:
                return _("killed by {name}", name=signal.Signals(-code).name)
            except ValueError:
                return _("killed by signal {value}", value=-code)
        return _("exit code {code}", code=code)

    def _died_mid_reply(self, exc: WorkerDied) -> str:
        """One line: an RPC worker that went away takes the model with it (llama.cpp aborts
        when one stops answering), so say which one rather than how the process ended."""
        gone = self._rpc_gone()
        if gone:
            return _("the RPC worker {workers} stopped answering mid-reply and the model "
                     "ended with it: load the model again without it (or start the worker "
                     "again)", workers=", ".join(gone))
        return _("the model worker died mid-reply ({exc}{log_hint}); reload the model to go on",
                 exc=exc, log_hint=self._log_hint())

    def _rpc_gone(self) -> list[str]:
        """The RPC workers of this model that do not answer now."""
        if not self.params.rpc_servers:
            return []
        from tui.rpc.probe import probe

        return [a for a in self.params.rpc_servers if not probe(a, timeout=1.0).reachable]

    def _log_hint(self) -> str:
        """The last line llama.cpp wrote before dying, if it says something."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(fh.tell() - 4096, 0))
                lines = fh.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            if line.strip() and not line.startswith(("Traceback", "  ")):
                return f": {line.strip()[:160]}"
        return ""

    def _reap(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._info = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)


_EMPTY_LOGS_LEFT: set[str] = set()
"""Default log files of this process, removed at its exit if nothing was written to them."""


def _default_log_path() -> str:
    """A private per-process log file for the worker's native output (shared by this
    process's workers; gone at exit when they wrote nothing, kept when they did)."""
    import atexit
    import tempfile

    folder = os.environ.get("LMDESK_CACHE_DIR") or tempfile.gettempdir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"lmdesk-worker-{os.getpid()}.log")
    if not _EMPTY_LOGS_LEFT:
        atexit.register(_remove_empty_logs)
    _EMPTY_LOGS_LEFT.add(path)
    return path


def _remove_empty_logs() -> None:
    for path in _EMPTY_LOGS_LEFT:
        with contextlib.suppress(OSError):
            if os.path.getsize(path) == 0:
                os.unlink(path)


def _failed(rid: int, parts: list[str], message: str) -> Done:
    stats = GenerationStats(0, 0.0, len(parts), 0.0, 0.0, 0, 0, "error", 0.0)
    return Done(rid, "".join(parts), stats, message)
