"""The caller's side of the training process: start it, read its events, cancel it.

One process per job (multiprocessing, spawn), like the model worker: a crash in PyTorch or
llama.cpp ends that process only and becomes one ``Failed`` line; the app stays responsive.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tui.i18n import _
from tui.spawn import stdio_with_file_descriptors
from tui.tune.errors import TuneError
from tui.tune.protocol import (
    TERMINAL,
    CancelRequest,
    Failed,
    Measured,
    MeasureRequest,
    TrainRequest,
    TuneEvent,
)

LOG_NAME = "train.log"


def _log_tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            tail = [line.strip() for line in fh.read().splitlines()[-lines:] if line.strip()]
    except OSError:
        return ""
    return _("; its log ends: {value}", value=' | '.join(tail)[:300]) if tail else ""


def _died(proc: BaseProcess, log_path: str) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            how = _("killed by {name}", name=signal.Signals(-code).name)
        except ValueError:
            how = _("killed by signal {value}", value=-code)
    else:
        how = _("exit status {code}", code=code)
    hint = _(" (SIGKILL is often the system running out of memory)") if code == -9 else ""
    return _("the training process died ({how}){hint}{log_tail}",
             how=how, hint=hint, log_tail=_log_tail(log_path))


class TuneProcess:
    """One spawned training process. ``cancel`` may be called from any thread."""

    def __init__(self, request: MeasureRequest | TrainRequest, log_path: str) -> None:
        self.request = request
        self.log_path = log_path
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self.finished = False

    def start(self) -> None:
        from tui.tune.trainer import tune_main

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=tune_main, args=(child, self.log_path), name="lmdesk-tune",
                           daemon=True)
        with stdio_with_file_descriptors():
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        parent.send(self.request)

    def events(self) -> Iterator[TuneEvent | Measured]:
        """Events until the last one (``Finished``, ``Cancelled``, ``Failed`` or ``Measured``);
        a process that dies without saying why yields one ``Failed``."""
        if self._conn is None or self._proc is None:
            raise TuneError(_("the training process was not started"))
        try:
            while True:
                try:
                    if not self._conn.poll(0.2):
                        if not self._proc.is_alive():
                            self._proc.join(1)
                            yield Failed(_died(self._proc, self.log_path))
                            return
                        continue
                    event = self._conn.recv()
                except (EOFError, OSError):
                    self._proc.join(5)
                    yield Failed(_died(self._proc, self.log_path))
                    return
                yield event
                if isinstance(event, (*TERMINAL, Measured)):
                    return
        finally:
            self.finished = True
            self.close()

    def cancel(self) -> None:
        """Ask for a checkpoint and a stop after the current step."""
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            if self._conn is not None and not self.finished:
                self._conn.send(CancelRequest())

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def measure(request: MeasureRequest, log_dir: str) -> Measured:
    """Token counts of the pairs (a short process: llama.cpp's tokenizer, vocabulary only)."""
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    job = TuneProcess(request, os.path.join(log_dir, "measure.log"))
    job.start()
    last: object = None
    for event in job.events():
        last = event
    if isinstance(last, Measured):
        return last
    if isinstance(last, Failed):
        raise TuneError(last.message)
    raise TuneError(_("measuring the pairs gave no answer ({last!r})", last=last))
