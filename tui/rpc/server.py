"""The process that runs llama.cpp's RPC server (``python -m tui.rpc.server HOST:PORT``).

It calls ``ggml_backend_rpc_start_server`` from the llama.cpp library llama-cpp-python
installed (built with ``GGML_RPC=ON`` by scripts/install), on the CPU device. That call blocks
for ever, serving one client at a time, so it runs in a daemon thread; the process ends when
its parent closes stdin (or kills it). It writes one ``ready`` line once the port listens, or
one ``error:`` line, to the status file descriptor its parent passed (``STATUS_FD``; stdout
when none): llama.cpp writes its own lines to stdout from its server thread ("Accepted client
connection" for every client), which would interleave with ours mid-line.

Symbols are looked up through libllama's own handle so they reach the same libggml instance
(and backend registry) that libllama uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

CPU_DEVICE = 0  # ggml_backend_dev_type: GGML_BACKEND_DEVICE_TYPE_CPU


def _lib() -> ctypes.CDLL:
    from llama_cpp import llama_cpp

    lib: ctypes.CDLL = llama_cpp._lib
    return lib


def _fn(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> object:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def start_function() -> Callable[..., None]:
    """``ggml_backend_rpc_start_server`` from the RPC backend; RuntimeError without one."""
    from llama_cpp import llama_cpp

    lib = _lib()
    llama_cpp.llama_backend_init()
    reg_by_name = _fn(lib, "ggml_backend_reg_by_name", ctypes.c_void_p, ctypes.c_char_p)
    proc = _fn(lib, "ggml_backend_reg_get_proc_address", ctypes.c_void_p, ctypes.c_void_p,
               ctypes.c_char_p)
    reg = reg_by_name(b"RPC")  # type: ignore[operator]
    if not reg:
        raise RuntimeError("this llama.cpp build has no RPC backend: run scripts/install again")
    address = proc(reg, b"ggml_backend_rpc_start_server")  # type: ignore[operator]
    if not address:
        raise RuntimeError("the RPC backend has no server function")
    kind = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                            ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p))
    start: Callable[..., None] = kind(address)
    return start


def cpu_device() -> int:
    dev_by_type = _fn(_lib(), "ggml_backend_dev_by_type", ctypes.c_void_p, ctypes.c_int)
    device: int = dev_by_type(CPU_DEVICE)  # type: ignore[operator]
    return device


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def serve(host: str, port: int, threads: int, status: TextIO | None = None) -> int:
    out = status or sys.stdout
    try:
        start = start_function()
        devices = (ctypes.c_void_p * 1)(cpu_device())
    except (ImportError, OSError, RuntimeError, AttributeError) as exc:
        print(f"error: {exc}", flush=True, file=out)
        return 1
    endpoint = f"{host}:{port}".encode()
    thread = threading.Thread(target=start, args=(endpoint, None, threads, 1, devices),
                              daemon=True, name="llama-rpc-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not _listening(host, port):
        if not thread.is_alive():
            print(f"error: llama.cpp's RPC server could not listen on {host}:{port} (is the "
                  "port taken?)", flush=True, file=out)
            return 1
        if time.monotonic() > deadline:
            print(f"error: llama.cpp's RPC server did not start on {host}:{port}", flush=True,
                  file=out)
            return 1
        time.sleep(0.05)
    print("ready", flush=True, file=out)
    with contextlib.suppress(KeyboardInterrupt, OSError):
        sys.stdin.read()  # the parent holds our stdin: when it goes, so do we
    return 0


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or ":" not in argv[0]:
        print("usage: python -m tui.rpc.server HOST:PORT THREADS [STATUS_FD]", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    status = os.fdopen(int(argv[2]), "w", encoding="utf-8") if len(argv) == 3 else None
    code = serve(host, int(port), max(1, int(argv[1])), status)
    # the server thread never returns: leave without waiting for it
    (status or sys.stdout).flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
