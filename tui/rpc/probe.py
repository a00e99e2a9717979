"""Asking an RPC worker how it is: reachable, memory offered and in use, round trip and
bandwidth. Standard library only; a non-loopback worker is network use (the offline guard
refuses it unless the user allowed it)."""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tui.i18n import _
from tui.rpc.gate import MAGIC

DEFAULT_PORT = 50052


@dataclass(frozen=True)
class WorkerStatus:
    address: str
    reachable: bool
    error: str = ""
    offered_bytes: int = 0
    """Memory the worker offers for layers (``--mem``, else what was free when it started)."""
    used_bytes: int = 0
    """Memory its llama.cpp server process holds now (grows when it receives layers)."""
    backend: str = ""
    busy: bool = False
    """A model server is connected to it now."""
    rtt_ms: float | None = None
    bandwidth_mb_s: float | None = None


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port defaults to 50052); ValueError says what is
    wrong."""
    text = text.strip()
    if not text:
        raise ValueError(_("an RPC worker needs an address (host:port)"))
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise ValueError(_("{text!r} has no host", text=text))
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(_("{text!r}: the port must be a number", text=text)) from None
    if not 0 < port < 65536:
        raise ValueError(_("{text!r}: the port must be between 1 and 65535", text=text))
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_workers(entries: str | Iterable[str]) -> tuple[str, ...]:
    """``host:port[,host:port]`` (one text, or several: ``--rpc`` given twice, a profile's
    list) as normalised addresses, each once, in order; ValueError names a bad one."""
    texts = [entries] if isinstance(entries, str) else list(entries)
    out: list[str] = []
    for text in texts:
        for part in str(text).split(","):
            if not part.strip():
                continue
            address = format_address(*parse_address(part))
            if address not in out:
                out.append(address)
    return tuple(out)


def is_loopback_address(text: str) -> bool:
    from tui.offline import is_local_host

    try:
        host, _port = parse_address(text)
    except ValueError:
        return False
    return is_local_host(host)


def offline_refusal(addresses: Iterable[str]) -> str | None:
    """One line when offline mode, said by the user (``--offline``, ``LMDESK_OFFLINE=1``,
    config), refuses one of these workers because it is on another machine; None when all may
    be used. llama.cpp connects to the workers from C, past the socket guard: this check,
    made before a model loads, is what keeps them out."""
    from tui.offline import OfflineError

    for address in addresses:
        try:
            with _network(address):
                pass
        except OfflineError as exc:
            return _("the RPC worker {address} is on another machine: {exc}", address=address,
                     exc=exc)
    return None


@contextmanager
def _network(address: str) -> Iterator[None]:
    """A worker on another machine is network use the user asked for (as a remote endpoint
    is): the offline guard lets its host through, unless offline mode was said."""
    from tui.offline import allow_network, is_local_host

    try:
        host, _port = parse_address(address)
    except ValueError:
        host = ""
    if not host or is_local_host(host):
        yield
        return
    with allow_network(f"RPC worker {address}", hosts=[host]):
        yield


def _ask(host: str, port: int, line: bytes, timeout: float) -> bytes:
    with _network(format_address(host, port)), \
            socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(MAGIC + b" " + line + b"\n")
        chunks = []
        while True:
            got = sock.recv(65536)
            if not got:
                break
            chunks.append(got)
            if line != b"STATUS" and not line.startswith(b"SEND"):
                break
        return b"".join(chunks)


def probe(address: str, *, timeout: float = 2.0, measure: bool = False) -> WorkerStatus:
    """The worker's status; with ``measure``, its round trip (median of 5) and bandwidth."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        return WorkerStatus(address, False, str(exc))
    try:
        raw = _ask(host, port, b"STATUS", timeout)
    except OSError as exc:
        return WorkerStatus(address, False, _describe(exc, address))
    try:
        info = json.loads(raw.decode("utf-8") or "{}")
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("kind") != "lmdesk-rpc-worker":
        return WorkerStatus(address, False, _("{address} does not answer like an lmdesk "
                                              "rpc-worker (a bare llama.cpp rpc-server is not "
                                              "supported)", address=address))
    rtt = bandwidth = None
    if measure:
        try:
            rtt, bandwidth = _measure(host, port, timeout)
        except OSError as exc:
            return WorkerStatus(address, False, _describe(exc, address))
    return WorkerStatus(
        address, True, offered_bytes=int(info.get("offered_bytes", 0)),
        used_bytes=int(info.get("used_bytes", 0)), backend=str(info.get("backend", "")),
        busy=bool(info.get("busy", False)), rtt_ms=rtt, bandwidth_mb_s=bandwidth,
    )


def _measure(host: str, port: int, timeout: float) -> tuple[float, float]:
    rtts = []
    for _attempt in range(5):
        start = time.perf_counter()
        _ask(host, port, b"PING", timeout)
        rtts.append((time.perf_counter() - start) * 1000)
    size = 8 << 20
    start = time.perf_counter()
    got = len(_ask(host, port, b"SEND %d" % size, timeout * 10))
    elapsed = max(time.perf_counter() - start, 1e-6)
    return statistics.median(rtts), got / elapsed / 1e6


def _describe(exc: BaseException, address: str) -> str:
    from tui.offline import OfflineError

    if isinstance(exc, OfflineError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return _("nothing listens at {address}: start `lmdesk rpc-worker` there", address=address)
    if isinstance(exc, TimeoutError | socket.timeout):
        return _("{address} did not answer in time", address=address)
    if isinstance(exc, socket.gaierror):
        return _("cannot find the host of {address}", address=address)
    return f"{address}: {exc}"
