"""The model worker's side of llama.cpp RPC: register lmdesk rpc-workers as devices before a
model loads, so llama.cpp offloads layers to them.

Only the worker process imports this (it loads llama_cpp). Each worker is asked first through
its gate (``tui.rpc.probe``): llama.cpp aborts the whole process when it cannot reach an RPC
server, so nothing unreachable is ever handed to it. The layers are split in proportion to
the memory each worker offers.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass

from tui.engine.errors import ModelLoadError
from tui.i18n import _


@dataclass(frozen=True)
class AttachedWorkers:
    addresses: tuple[str, ...]
    tensor_split: tuple[float, ...]
    """One share per RPC device, in the order llama.cpp lists them (registered first)."""
    offered_bytes: tuple[int, ...]


def attach(addresses: Sequence[str]) -> AttachedWorkers:
    """Register each worker's devices with llama.cpp; ModelLoadError (one line) when one is
    unreachable or the build has no RPC backend."""
    from tui.rpc.probe import probe

    statuses = [probe(address) for address in addresses]
    down = [s for s in statuses if not s.reachable]
    if down:
        raise ModelLoadError(_("RPC worker not usable: {problems}",
                               problems="; ".join(s.error for s in down)))
    busy = [s.address for s in statuses if s.busy]
    if busy:
        raise ModelLoadError(_("the RPC worker {value} already serves another model (a worker "
                               "serves one model at a time)", value=busy[0]))
    # llama.cpp aborts when a worker stops answering; its backtrace would attach gdb to this
    # process first (seconds, and noise in the log) for an end lmdesk explains itself
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    from llama_cpp import llama_cpp

    lib = llama_cpp._lib
    llama_cpp.llama_backend_init()
    reg_by_name = lib.ggml_backend_reg_by_name
    reg_by_name.restype, reg_by_name.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    proc = lib.ggml_backend_reg_get_proc_address
    proc.restype, proc.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    register = lib.ggml_backend_register
    register.restype, register.argtypes = None, [ctypes.c_void_p]
    dev_count = lib.ggml_backend_reg_dev_count
    dev_count.restype, dev_count.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    rpc = reg_by_name(b"RPC")
    if not rpc:
        raise ModelLoadError(_("this llama.cpp build has no RPC backend: run scripts/install "
                               "again (it builds llama.cpp with GGML_RPC=ON)"))
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(
        proc(rpc, b"ggml_backend_rpc_add_server"))
    split: list[float] = []
    for status in statuses:
        reg = add_server(status.address.encode())
        if not reg:
            raise ModelLoadError(_("the RPC worker {address} offers no device",
                                   address=status.address))
        register(reg)
        n = int(dev_count(reg)) or 1
        split.extend([status.offered_bytes / n] * n)
    total = sum(split) or 1.0
    return AttachedWorkers(tuple(s.address for s in statuses),
                           tuple(share / total for share in split),
                           tuple(s.offered_bytes for s in statuses))
