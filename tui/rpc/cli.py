"""``lmdesk rpc-worker``: lend this machine's memory and cores to a model running elsewhere.

Starts llama.cpp's RPC server (``tui.rpc.server``) on a private loopback port and the gate
(``tui.rpc.gate``) where the user asked, prints the address, what it offers and the security
warning, then serves until ctrl+c. ``tui/cli.py`` adds the parser with ``add_rpc_parser``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, TextIO

from tui.i18n import N_, _
from tui.rpc.gate import Gate, parse_allow

WARNING = (
    N_("llama.cpp's RPC protocol has no authentication and no encryption: anyone who can reach "
       "this port can load data into this machine's memory and run work on it.")
)


class RpcError(Exception):
    """One line for ``lmdesk: error: ...``."""


def add_rpc_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "rpc-worker", help=_("lend this machine's memory to a model running on another one"))
    p.add_argument("--host", default="127.0.0.1",
                   help=_("address to listen on (default: this machine only)"))
    p.add_argument("--port", type=int, default=50052)
    p.add_argument("--mem", type=float, metavar="GiB",
                   help=_("memory to offer for layers (default: what is free now)"))
    p.add_argument("--threads", type=int, help=_("CPU threads (default: physical cores)"))
    p.add_argument("--expose", action="store_true",
                   help=_("listen on an address other machines reach (needs --allow)"))
    p.add_argument("--allow", action="append", default=[], metavar="ADDRESS",
                   help=_("a client address or network allowed in (repeatable, with --expose)"))
    return p


def _check(args: argparse.Namespace) -> list[Any]:
    from tui.serve.server import is_loopback

    if not 0 < args.port < 65536:
        raise RpcError(_("--port must be between 1 and 65535, got {port}", port=args.port))
    if args.mem is not None and not (args.mem > 0 and args.mem < 1 << 20):
        raise RpcError(_("--mem must be a positive number of GiB, got {mem}", mem=args.mem))
    try:
        allow = parse_allow(args.allow)
    except ValueError as exc:
        raise RpcError(_("--allow: {exc}", exc=exc)) from None
    if not is_loopback(args.host):
        if not args.expose:
            raise RpcError(
                _("refusing to listen on {host}: {WARNING} Pass --expose with --allow for each "
                  "client machine, or keep 127.0.0.1 and use an SSH tunnel (ssh -L "
                  "50052:127.0.0.1:50052 worker-host)", host=args.host, WARNING=_(WARNING)))
        if not allow:
            raise RpcError(_("--expose needs at least one --allow ADDRESS (the machines that "
                             "may use this worker)"))
    return allow


def _offered_bytes(mem_gib: float | None) -> int:
    import psutil

    if mem_gib is not None:
        return int(mem_gib * (1 << 30))
    return int(psutil.virtual_memory().available * 0.9)


def _start_server(threads: int) -> tuple[subprocess.Popen[str], int]:
    """The llama.cpp RPC server on a free loopback port; RpcError when it cannot start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    # our "ready" comes on a pipe of its own: llama.cpp writes to stdout from its server
    # thread (a line per client), which nobody reads (a full pipe would stall the server) and
    # which would cut our line in two
    status_read, status_write = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.rpc.server", f"127.0.0.1:{port}", str(threads),
             str(status_write)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True, pass_fds=(status_write,),
            start_new_session=True,  # ctrl+c reaches the gate, which stops it in order
        )
    finally:
        os.close(status_write)
    with os.fdopen(status_read, encoding="utf-8", errors="replace") as status:
        line = status.readline().strip()
    if line != "ready":
        proc.kill()
        proc.wait()
        raise RpcError(line.removeprefix("error: ") or _("the RPC server did not start"))
    return proc, port


def cmd_rpc_worker(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import psutil

    out = out or sys.stdout
    allow = _check(args)
    threads = args.threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    offered = _offered_bytes(args.mem)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        listener.close()
        raise RpcError(_("cannot listen on {host}:{port}: {strerror}",
                         host=args.host, port=args.port, strerror=exc.strerror)) from None
    listener.listen(16)
    proc, port = _start_server(threads)
    server = psutil.Process(proc.pid)
    gate: Gate

    def status() -> dict[str, object]:
        try:
            used = server.memory_info().rss
        except psutil.Error:
            used = 0
        with gate.stats.lock:
            busy = gate.stats.connected > 0
        return {"kind": "lmdesk-rpc-worker", "version": 1, "backend": "CPU",
                "offered_bytes": offered, "used_bytes": used, "busy": busy,
                "threads": threads}

    def log(line: str) -> None:
        print(_("lmdesk rpc-worker: {line}", line=line), file=out, flush=True)

    gate = Gate(listener, ("127.0.0.1", port), allow=allow, status=status, log=log)
    where = f"[{args.host}]:{args.port}" if family == socket.AF_INET6 else \
        f"{args.host}:{args.port}"
    print(_("lmdesk rpc-worker: listening on {where}", where=where), file=out)
    print(_("  offers {value:.1f} GiB of memory, CPU backend, {threads} threads",
            value=offered / (1 << 30), threads=threads), file=out)
    if allow:
        print(_("  clients allowed: ") + ", ".join(str(n) for n in allow), file=out)
    else:
        print(_("  clients allowed: this machine only"), file=out)
    print(_("  warning: {WARNING}", WARNING=_(WARNING)), file=out)
    print(_("  use it from the main machine: lmdesk ask --rpc {where} ...",
            where=where), file=out, flush=True)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()
        gate.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        gate.serve_forever()
    finally:
        gate.stop()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(_("lmdesk rpc-worker: stopped ({clients} client connection(s), {count} refused)",
            clients=gate.stats.clients, count=len(gate.stats.refused)), file=out, flush=True)
    return 0
