"""The gate in front of a worker's llama.cpp RPC server.

llama.cpp's RPC protocol has no authentication: whoever reaches the port can allocate memory
and run graphs on the worker. The gate listens where the user asked, admits only loopback and
the allow-listed client addresses, and passes every other byte through to the real server on
a private loopback port. A connection whose first bytes are ``LMDESK`` is lmdesk asking about
the worker instead (one line in, one answer out):

- ``LMDESK STATUS`` -> one JSON line: memory offered, memory in use, backend, whether a client
  is connected;
- ``LMDESK PING`` -> ``PONG`` (round trip);
- ``LMDESK SEND n`` -> n bytes (bandwidth).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tui.i18n import _

MAGIC = b"LMDESK"
CHUNK = 1 << 20
MAX_PROBE_BYTES = 64 << 20
HELLO_TIMEOUT_S = 10.0
"""A client must say something within this long (a silent connection holds nothing)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(entries: Iterable[str]) -> list[Network]:
    """Client addresses or networks (``192.168.1.20``, ``10.0.0.0/24``); ValueError names a bad
    one."""
    nets: list[Network] = []
    for entry in entries:
        for part in entry.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(_("{part!r} is not an address or a network", part=part)) from None
    return nets


def admitted(address: str, allow: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in allow)


@dataclass
class GateStats:
    clients: int = 0
    refused: list[str] = field(default_factory=list)
    connected: int = 0
    """Clients connected to the model server now."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Gate:
    """Accepts on ``listener`` and forwards admitted clients to ``backend`` (host, port)."""

    def __init__(self, listener: socket.socket, backend: tuple[str, int], *,
                 allow: list[Network], status: Callable[[], dict[str, object]],
                 log: Callable[[str], None] = lambda _line: None) -> None:
        self.listener = listener
        self.backend = backend
        self.allow = allow
        self.status = status
        self.log = log
        self.stats = GateStats()
        self._stop = threading.Event()

    def serve_forever(self) -> None:
        self.listener.settimeout(0.5)
        while not self._stop.is_set():
            try:
                client, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            host = str(address[0])
            if not admitted(host, self.allow):
                with self.stats.lock:
                    self.stats.refused.append(host)
                self.log(_("refused a connection from {host} (not on the allow list)", host=host))
                client.close()
                continue
            threading.Thread(target=self._handle, args=(client, host), daemon=True,
                             name="lmdesk-rpc-gate").start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()

    def _handle(self, client: socket.socket, host: str) -> None:
        try:
            client.settimeout(HELLO_TIMEOUT_S)
            head = client.recv(len(MAGIC), socket.MSG_PEEK)
            if not head:
                client.close()
                return
            if head == MAGIC:
                self._answer(client)
            else:
                client.settimeout(None)
                self._forward(client, host)
        except OSError:
            client.close()

    def _answer(self, client: socket.socket) -> None:
        with client:
            line = b""
            while not line.endswith(b"\n") and len(line) < 256:
                got = client.recv(256 - len(line))
                if not got:
                    return
                line += got
            words = line.decode("ascii", "replace").split()
            if words[1:2] == ["STATUS"]:
                client.sendall(json.dumps(self.status()).encode() + b"\n")
            elif words[1:2] == ["PING"]:
                client.sendall(b"PONG\n")
            elif words[1:2] == ["SEND"] and len(words) == 3 and words[2].isdigit():
                left = min(int(words[2]), MAX_PROBE_BYTES)
                block = bytes(min(CHUNK, max(left, 1)))
                while left > 0:
                    piece = block[:left]
                    client.sendall(piece)
                    left -= len(piece)

    def _forward(self, client: socket.socket, host: str) -> None:
        try:
            server = socket.create_connection(self.backend, timeout=10)
        except OSError as exc:
            self.log(_("the model server is not answering ({exc})", exc=exc))
            client.close()
            return
        server.settimeout(None)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.stats.lock:
            self.stats.clients += 1
            self.stats.connected += 1
        self.log(_("client {host} connected", host=host))
        started = time.monotonic()
        back = threading.Thread(target=_pump, args=(server, client), daemon=True)
        back.start()
        _pump(client, server)
        back.join()
        with self.stats.lock:
            self.stats.connected -= 1
        self.log(_("client {host} left after {value:.0f} s",
                   host=host, value=time.monotonic() - started))


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes; then close both ways."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while True:
            n = source.recv_into(buffer)
            if n == 0:
                break
            sink.sendall(view[:n])
    except OSError:
        pass
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
