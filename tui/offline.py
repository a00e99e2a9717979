"""Offline mode, enforced: lmdesk opens no outbound connection unless the user asks for one.

The switch: the ``offline`` setting (default on), ``LMDESK_OFFLINE=1/0`` and the ``--offline`` /
``--online`` flags (flag beats environment beats config beats the default). When offline:

- the Hugging Face libraries are told so (``HF_HUB_OFFLINE=1``) before they are imported;
- a socket-level guard refuses every connection and name lookup for a host that is not this
  machine, with an ``OfflineError`` naming what was refused.

Offline by default, a download or a remote endpoint the user asks for opens the door for its
own hosts only, for as long as it runs::

    with allow_network("https://huggingface.co/...", hosts=HF_HOSTS):
        ...

Offline because the user said so (any of the flag, ``LMDESK_OFFLINE=1`` or ``offline = true``
in config.toml: one switch, ``OfflineState.strict``), the door stays shut: ``allow_network``
raises ``OfflineError`` before any name is looked up.

Telemetry is silenced whatever the mode (``HF_HUB_DISABLE_TELEMETRY=1``, ``DO_NOT_TRACK=1``).
Call ``apply_offline_mode`` in ``main()`` before anything imports huggingface_hub.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tui.i18n import N_, _

ENV_OFFLINE = "LMDESK_OFFLINE"
ENV_SOURCE = "LMDESK_OFFLINE_SOURCE"
"""Set beside ``LMDESK_OFFLINE`` by ``apply_offline_mode``: what decided it, so the processes
it starts (and a later look in this one) do not take the inherited value for the user's."""
TURN_OFF = N_("turn it off with --online or LMDESK_OFFLINE=0")

SILENCED_ENV: dict[str, str] = {
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub: no usage headers/pings
    "DO_NOT_TRACK": "1",  # the cross-tool convention (honoured by huggingface_hub and others)
}
"""Set in every mode: lmdesk sends no telemetry."""

HF_HOSTS: tuple[str, ...] = (
    "huggingface.co",
    "cdn-lfs.huggingface.co",
    "cdn-lfs-us-1.huggingface.co",
    "cdn-lfs.hf.co",
    "cas-bridge.xethub.hf.co",
    "cas-server.xethub.hf.co",
    "transfer.xethub.hf.co",
)
"""Where a Hugging Face download goes (the API, then redirects to its file CDNs)."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class OfflineError(ConnectionRefusedError):
    """An outbound connection refused because lmdesk is offline."""


@dataclass(frozen=True)
class OfflineState:
    offline: bool
    source: str
    """What decided it: "flag", "environment" or "config"."""
    notes: tuple[str, ...] = ()
    """Things to tell the user (an unreadable LMDESK_OFFLINE, huggingface_hub imported early)."""
    silenced: tuple[str, ...] = tuple(SILENCED_ENV)
    """Environment variables set to keep libraries from phoning home."""

    @property
    def strict(self) -> bool:
        """Offline because the user said so: no download or endpoint opens the door."""
        return self.offline and self.source != "default"


SOURCES = ("flag", "environment", "config", "default")


def decide_offline(
    config_offline: bool, flag: bool | None, env: Mapping[str, str], *,
    from_config: bool = True,
) -> tuple[bool, str, list[str]]:
    """Flag, then ``LMDESK_OFFLINE``, then the config (``from_config``: config.toml sets it;
    else it is the default). Returns (offline, source, notes)."""
    notes: list[str] = []
    if flag is not None:
        return flag, "flag", notes
    raw = env.get(ENV_OFFLINE)
    if raw is not None:
        value = raw.strip().lower()
        inherited = env.get(ENV_SOURCE, "environment")  # set by apply_offline_mode
        source = inherited if inherited in SOURCES else "environment"
        if value in _TRUE:
            return True, source, notes
        if value in _FALSE:
            return False, source, notes
        notes.append(_("{ENV_OFFLINE}={raw!r} is not 1 or 0; ignored",
                       ENV_OFFLINE=ENV_OFFLINE, raw=raw))
    return bool(config_offline), "config" if from_config else "default", notes


def apply_offline_mode(
    settings: Any, flag: bool | None, env: MutableMapping[str, str] | None = None
) -> OfflineState:
    """Decide offline or online, set the libraries' switches in ``env`` and, when offline,
    install the socket guard in this process. ``settings`` needs an ``offline`` attribute.

    ``env`` is ``os.environ`` by default (child processes inherit the switches, and
    ``LMDESK_OFFLINE`` is set so a model worker can call ``install_from_env()``).
    """
    global _state
    target = os.environ if env is None else env
    from_config = "offline" in getattr(settings, "from_file", ("offline",))
    offline, source, notes = decide_offline(getattr(settings, "offline", True), flag, target,
                                            from_config=from_config)
    for key, value in SILENCED_ENV.items():
        target[key] = value
    if offline:
        target["HF_HUB_OFFLINE"] = "1"
        target[ENV_OFFLINE] = "1"
    else:
        target.pop("HF_HUB_OFFLINE", None)
        target[ENV_OFFLINE] = "0"
    target[ENV_SOURCE] = source
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported before us: its constants are already read; set them too
        notes.append(_("huggingface_hub was imported before offline mode was applied"))
        setattr(hub, "HF_HUB_OFFLINE", offline)  # noqa: B010
        setattr(hub, "HF_HUB_DISABLE_TELEMETRY", True)  # noqa: B010
    if offline:
        install_guard()
    else:
        uninstall_guard()
    _state = OfflineState(offline, source, tuple(notes))
    return _state


def current_state() -> OfflineState | None:
    """What ``apply_offline_mode`` decided in this process (None before it ran)."""
    return _state


def enable_offline(reason: str | None = None) -> None:
    """Turn the guard on in this process (idempotent); ``reason`` is kept for messages."""
    global _reason
    _reason = reason or N_("offline mode")
    os.environ["HF_HUB_OFFLINE"] = "1"
    install_guard()


def install_from_env(env: Mapping[str, str] | None = None) -> bool:
    """For child processes (a model worker): install the guard if ``LMDESK_OFFLINE`` says so."""
    raw = (os.environ if env is None else env).get(ENV_OFFLINE, "").strip().lower()
    if raw in _TRUE:
        install_guard()
        return True
    return False


# -- the guard -------------------------------------------------------------------------------

_state: OfflineState | None = None
_lock = threading.RLock()
_installed = False
_reason = N_("offline mode")
_allowed_hosts: dict[str, int] = {}
"""Host (lower case) -> how many ``allow_network`` blocks hold it open."""
_host_addrs: dict[str, set[str]] = {}
"""Allowed host -> the addresses it resolved to while allowed (dropped when it closes)."""
_refused: list[str] = []
_originals: dict[str, Any] = {}


def is_local_host(host: str) -> bool:
    """This machine: loopback names and addresses (and the unspecified address)."""
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost", ""):
        return True
    if name.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified


def _split(address: Any) -> tuple[str, Any] | None:
    """(host, port) of an inet address; None for AF_UNIX paths and other families."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), address[1]
    return None


def _is_allowed(host: str) -> bool:
    h = host.strip("[]").lower()
    if is_local_host(h) or h in _allowed_hosts:
        return True
    with _lock:
        return any(h in addrs for addrs in _host_addrs.values())


def _refuse(host: str, port: Any) -> OfflineError:
    where = f"{host}:{port}" if port not in (None, "", 0) else host
    message = _("{reason}: refused a connection to {where} ({TURN_OFF})",
                reason=_(_reason), where=where, TURN_OFF=_(TURN_OFF))
    with _lock:
        _refused.append(where)
    return OfflineError(message)


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    hp = _split(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and hp and not _is_allowed(hp[0]):
        raise _refuse(*hp)
    return _originals["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    hp = _split(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and hp and not _is_allowed(hp[0]):
        raise _refuse(*hp)
    return _originals["connect_ex"](self, address)


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else ("" if host is None else str(host))
    if not _is_allowed(name):
        raise _refuse(name, port)
    result = _originals["getaddrinfo"](host, port, *args, **kwargs)
    if not is_local_host(name):  # an allowed host: its addresses may be connected to
        with _lock:
            if name.lower() in _allowed_hosts:
                addrs = _host_addrs.setdefault(name.lower(), set())
                addrs.update(str(info[4][0]).lower() for info in result)
    return result


def install_guard() -> None:
    """Wrap ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` (which
    ``create_connection``, urllib, requests, httpx and asyncio all go through)."""
    global _installed
    with _lock:
        if _installed:
            return
        _originals["connect"] = socket.socket.connect
        _originals["connect_ex"] = socket.socket.connect_ex
        _originals["getaddrinfo"] = socket.getaddrinfo
        socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
        socket.getaddrinfo = _guarded_getaddrinfo
        _installed = True


def uninstall_guard() -> None:
    """Put the originals back (only if ours are still the ones installed); the offline state
    decided before is over with it."""
    global _installed, _state
    with _lock:
        if _state is not None and _state.offline:
            _state = None
        if not _installed:
            return
        if socket.socket.connect is _guarded_connect:
            socket.socket.connect = _originals["connect"]  # type: ignore[method-assign,assignment]
        if socket.socket.connect_ex is _guarded_connect_ex:
            socket.socket.connect_ex = _originals["connect_ex"]  # type: ignore[method-assign,assignment]
        if socket.getaddrinfo is _guarded_getaddrinfo:
            socket.getaddrinfo = _originals["getaddrinfo"]
        _installed = False


def guard_installed() -> bool:
    return _installed


def refused() -> list[str]:
    """The host:port of every connection refused so far (for `lmdesk doctor` and tests)."""
    with _lock:
        return list(_refused)


def _hosts_of(for_what: str, hosts: Iterable[str]) -> list[str]:
    found = [h.strip().lower() for h in hosts if h.strip()]
    if "://" in for_what:
        host = urlsplit(for_what).hostname
        if host:
            found.append(host.lower())
    return found


@contextmanager
def allow_network(for_what: str, hosts: Iterable[str] = ()) -> Iterator[list[str]]:
    """Open the door for these hosts only (the URL in ``for_what``, plus ``hosts``) while the
    block runs; every other host stays refused. Yields the hosts opened. Also lifts
    huggingface_hub's offline switch for the block when a Hugging Face host is among them."""
    opened = _hosts_of(for_what, hosts)
    if not opened:
        raise ValueError(_("allow_network({for_what!r}): name the host (a URL or hosts=...)",
                           for_what=for_what))
    state = _state
    outside = [h for h in opened if not is_local_host(h)]
    if state is not None and state.strict and _installed and outside:
        said = {"flag": "--offline", "environment": f"{ENV_OFFLINE}=1",
                "config": "offline = true in config.toml"}.get(state.source, state.source)
        with _lock:
            _refused.append(outside[0])
        raise OfflineError(_("offline mode ({said}): {value} not contacted; {TURN_OFF}",
                             said=said, value=outside[0], TURN_OFF=_(TURN_OFF)))
    hub = sys.modules.get("huggingface_hub.constants")
    lift_hub = hub is not None and any(h in HF_HOSTS or h.endswith(".hf.co") for h in opened)
    with _lock:
        for h in opened:
            _allowed_hosts[h] = _allowed_hosts.get(h, 0) + 1
        hub_was = getattr(hub, "HF_HUB_OFFLINE", None) if lift_hub else None
        if lift_hub:
            setattr(hub, "HF_HUB_OFFLINE", False)  # noqa: B010
    try:
        yield opened
    finally:
        with _lock:
            for h in opened:
                count = _allowed_hosts.get(h, 0) - 1
                if count > 0:
                    _allowed_hosts[h] = count
                else:
                    _allowed_hosts.pop(h, None)
                    _host_addrs.pop(h, None)
            if lift_hub and hub_was is not None:
                setattr(hub, "HF_HUB_OFFLINE", hub_was)  # noqa: B010



def add_offline_arguments(parser: Any) -> None:
    """``--offline`` / ``--online`` on an argparse parser; the value lands in ``args.offline``
    (True, False, or None when neither was given)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--offline", dest="offline", action="store_true", default=None,
        help=_("refuse every outbound connection (the default; LMDESK_OFFLINE=1)"),
    )
    group.add_argument(
        "--online", dest="offline", action="store_false",
        help=_("allow network use (downloads, remote endpoints; LMDESK_OFFLINE=0)"),
    )
