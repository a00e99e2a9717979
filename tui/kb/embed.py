"""Dense embeddings from a GGUF embedding model, in a worker process like every model.

``LlamaEmbedder(path)`` starts a spawned process that imports llama-cpp-python and loads the
model with ``embedding=True`` (mean pooling); the app process never imports llama_cpp. Pass
it to ``KnowledgeBase.reindex(embedder=...)`` and ``search(..., embedder=...)``: BM25 and
cosine rankings are then fused by reciprocal rank fusion. Vectors are stored per knowledge
base with the model's name, and reused for unchanged chunks.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from tui.i18n import _


class EmbedderError(Exception):
    """The embedding model could not be loaded or failed."""


def _serve(conn: Connection, model_path: str, n_ctx: int, n_threads: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # llama.cpp logs to stderr; keep the terminal clean
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=model_path, embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                    n_ubatch=n_ctx, n_threads=n_threads, pooling_type=1, verbose=False)
        conn.send(("ok", None))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        try:
            out = [llm.embed(t[: n_ctx * 3] or " ") for t in msg]
            conn.send(("ok", out))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class LlamaEmbedder:
    """A GGUF embedding model in its own process. Use as a context manager or ``close()``."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 512,
                 n_threads: int | None = None) -> None:
        self.model_path = str(model_path)
        self._name = Path(model_path).name
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, daemon=True, args=(
            child, self.model_path, n_ctx, n_threads or max(1, (os.cpu_count() or 2) // 2)))
        self._proc.start()
        child.close()
        status, err = self._recv()
        if status != "ok":
            self.close()
            raise EmbedderError(_("cannot load embedding model {name}: {err}",
                                  name=self._name, err=err))

    @property
    def name(self) -> str:
        return self._name

    def _recv(self) -> tuple[str, Any]:
        try:
            msg: tuple[str, Any] = self._conn.recv()
        except (EOFError, OSError):
            raise EmbedderError(_("the embedding worker for {name} died",
                                  name=self._name)) from None
        return msg

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self._conn.send(list(texts))
        status, out = self._recv()
        if status != "ok":
            raise EmbedderError(str(out))
        return [list(map(float, v)) for v in out]

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()

    def __enter__(self) -> LlamaEmbedder:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
