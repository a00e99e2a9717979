"""What the other machines a model runs on spend: each RPC worker's memory and state (asked
through its gate, ``tui.rpc.probe``), and a remote endpoint's own figures
(``tui.monitor.remote``: "not offered" when it has none). Sampled by the monitor on its timer
while the panel is visible; nothing is asked when the model runs here alone. No Textual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui.monitor.remote import RemoteFigures
from tui.rpc.probe import WorkerStatus

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class ElsewhereSample:
    workers: tuple[WorkerStatus, ...] = ()
    remote: RemoteFigures | None = None
    """None: the model does not run on a remote endpoint."""


def sample_elsewhere(rpc_servers: Sequence[str] = (), endpoint_url: str | None = None,
                     api_key: str | None = None, *, timeout: float = 1.0) -> ElsewhereSample:
    """Ask each worker and the endpoint (never raises: what cannot be reached says so)."""
    from tui.rpc.probe import probe

    workers = tuple(probe(address, timeout=timeout) for address in rpc_servers)
    remote = None
    if endpoint_url:
        from tui.monitor.remote import fetch

        remote = fetch(endpoint_url, api_key, timeout=timeout)
    return ElsewhereSample(workers, remote)


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def worker_state(status: WorkerStatus) -> str:
    if not status.reachable:
        return "gone"
    return "serving" if status.busy else "idle"


def rows(sample: ElsewhereSample) -> list[tuple[str, str]]:
    """(label, value) lines for the monitor."""
    out: list[tuple[str, str]] = []
    for status in sample.workers:
        out.append(("rpc", status.address))
        if status.reachable:
            out.append(("", f"{_size(status.used_bytes)}/{_size(status.offered_bytes)} "
                            f"{worker_state(status)}"))
        else:
            out.append(("", "gone (not answering)"))
    remote = sample.remote
    if remote is not None:
        if remote.offered:
            out.extend(remote.rows)
        elif remote.error:
            out.append(("server", "not reachable"))
        else:
            out.append(("server", "figures not offered"))
    return out
