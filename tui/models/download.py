"""Downloads from the Hugging Face Hub into its cache, with progress, cancel and clear errors.

``huggingface_hub`` does the transfer (``hf_hub_download``): it resumes a dropped connection
with a Range request (up to five times within one call) and moves the finished file into the
cache atomically. A cancelled or failed download leaves no partial file behind; the next
``download`` starts that file again.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE once, when imported; this
module reads them when called, so a change in the environment takes effect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tui.i18n import _
from tui.models.listing import hf_cache_dir

DEFAULT_ENDPOINT = "https://huggingface.co"
DISK_MARGIN = 64 << 20
QUANT_PREFERENCE = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q5_K_S", "Q6_K", "Q8_0")


class DownloadError(Exception):
    """A download that cannot go on; the message says why and what to do."""


class Offline(DownloadError):
    """No network: HF_HUB_OFFLINE is set or the Hub cannot be reached."""


class NotEnoughDisk(DownloadError):
    pass


class DownloadCancelled(DownloadError):
    pass


@dataclass(frozen=True)
class DownloadProgress:
    filename: str
    done_bytes: int
    total_bytes: int | None
    bytes_per_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float | None:
        return self.done_bytes / self.total_bytes if self.total_bytes else None


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    repo_id: str
    filename: str
    size_bytes: int
    seconds: float
    cached: bool
    """True when the file was already in the cache and nothing was fetched."""


ProgressCallback = Callable[[DownloadProgress], None]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "on", "yes", "true")


def resolve_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def env_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE"))


_online_lock = threading.Lock()
_online_users = 0
_saved_offline = False


@contextlib.contextmanager
def _online() -> Iterator[None]:
    """Let huggingface_hub make requests even if HF_HUB_OFFLINE was set when it was imported."""
    global _online_users, _saved_offline
    from huggingface_hub import constants

    with _online_lock:
        if _online_users == 0:
            _saved_offline = bool(constants.HF_HUB_OFFLINE)
        _online_users += 1
        constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        with _online_lock:
            _online_users -= 1
            if _online_users == 0:
                constants.HF_HUB_OFFLINE = _saved_offline


def _check_offline(offline: bool | None, endpoint: str) -> None:
    if offline if offline is not None else env_offline():
        raise Offline(
            _("no network: offline mode (HF_HUB_OFFLINE) is on; unset it to download from "
              "{endpoint}", endpoint=endpoint)
        )


def _translate(exc: BaseException, endpoint: str, repo_id: str, filename: str | None) -> Exception:
    """huggingface_hub and httpx errors -> one clear message."""
    from huggingface_hub import errors

    what = f"{repo_id}/{filename}" if filename else repo_id
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, errors.GatedRepoError):
        return DownloadError(
            _("{repo_id} is gated: accept its license on the Hub, then set HF_TOKEN and try "
              "again", repo_id=repo_id)
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return DownloadError(_("no repository {repo_id} on {endpoint} (or it is private)",
                               repo_id=repo_id, endpoint=endpoint))
    if isinstance(exc, errors.RevisionNotFoundError):
        return DownloadError(_("{repo_id} has no such revision", repo_id=repo_id))
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return DownloadError(_("{repo_id} has no file {filename}: `lmdesk models pull "
                               "{repo_id}` lists its GGUF files",
                               repo_id=repo_id, filename=filename))
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return Offline(_("no network: offline mode is on ({exc})", exc=exc))
    if isinstance(exc, errors.HfHubHTTPError):
        return DownloadError(_("the Hub refused {what}: {exc}", what=what, exc=exc))
    name = type(exc).__name__
    if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                "LocalEntryNotFoundError", "RemoteProtocolError", "ReadError") or isinstance(
        exc, ConnectionError | TimeoutError
    ):
        return Offline(_("no network: cannot reach {endpoint} ({exc})", endpoint=endpoint, exc=exc))
    if isinstance(exc, OSError):
        return DownloadError(_("download of {what} failed: {exc}", what=what, exc=exc))
    return DownloadError(_("download of {what} failed: {name}: {exc}",
                           what=what, name=name, exc=exc))


def remote_size(
    repo_id: str, filename: str, *, revision: str = "main", endpoint: str | None = None,
    token: str | None = None, timeout: float = 10.0,
) -> int | None:
    """The file's size from the Hub's metadata (a HEAD request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    base = resolve_endpoint(endpoint)
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=base)
    try:
        with _online():
            meta = get_hf_file_metadata(url, token=token, timeout=timeout, endpoint=base)
    except Exception as exc:
        raise _translate(exc, base, repo_id, filename) from None
    size = meta.size
    return int(size) if size is not None else None


def free_disk(folder: Path) -> int:
    """Free bytes on the filesystem that holds ``folder`` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            if candidate.exists():
                return int(shutil.disk_usage(candidate).free)
    return 0


def list_gguf_files(
    repo_id: str, *, revision: str = "main", endpoint: str | None = None,
    token: str | None = None, offline: bool | None = None,
) -> list[tuple[str, int]]:
    """The GGUF files of a Hub repository with their sizes."""
    from huggingface_hub import HfApi

    base = resolve_endpoint(endpoint)
    _check_offline(offline, base)
    try:
        with _online():
            api = HfApi(endpoint=base, token=token)
            items = list(api.list_repo_tree(repo_id, revision=revision, recursive=True))
    except Exception as exc:
        raise _translate(exc, base, repo_id, None) from None
    files = [(str(i.path), int(getattr(i, "size", 0) or 0)) for i in items
             if str(getattr(i, "path", "")).lower().endswith(".gguf")]
    return sorted(files)


def pick_file(files: list[tuple[str, int]]) -> str | None:
    """The quantization most people want (Q4_K_M first), else the smallest GGUF."""
    ggufs = [f for f in files if "mmproj" not in f[0].lower()]
    for quant in QUANT_PREFERENCE:
        for name, _size in ggufs:
            if quant.lower() in name.lower():
                return name
    return min(ggufs, key=lambda f: f[1])[0] if ggufs else None


class _Progress:
    """A tqdm stand-in handed to huggingface_hub: forwards bytes to a callback, checks cancel."""

    def __init__(
        self, filename: str, callback: ProgressCallback | None, cancel: threading.Event | None,
        **kwargs: Any,
    ) -> None:
        self.filename = filename
        self.callback = callback
        self.cancel = cancel
        self.total: int | None = kwargs.get("total")
        self.n = int(kwargs.get("initial") or 0)
        self.start = time.monotonic()
        self.start_n = self.n
        self.window: list[tuple[float, int]] = [(self.start, self.n)]
        self._report()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def update(self, n: int | float = 1) -> None:
        self.n += int(n)
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(_("download of {filename} cancelled", filename=self.filename))
        self._report()

    def _report(self) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        self.window.append((now, self.n))
        while len(self.window) > 2 and now - self.window[0][0] > 5.0:
            self.window.pop(0)
        t0, n0 = self.window[0]
        speed = (self.n - n0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - self.n) / speed if self.total and speed > 0 else None
        self.callback(DownloadProgress(self.filename, self.n, self.total, speed, eta))


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    offline: bool | None = None,
    token: str | None = None,
) -> DownloadResult:
    """Fetch ``filename`` of ``repo_id`` into the Hugging Face cache and return its path.

    ``endpoint`` defaults to $HF_ENDPOINT, then the public Hub; ``cache_dir`` to the cache
    HF_HUB_CACHE/HF_HOME point at; ``offline`` to $HF_HUB_OFFLINE. A file already in the cache
    is returned without touching the network. Raises ``Offline``, ``NotEnoughDisk``,
    ``DownloadCancelled`` or ``DownloadError``.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    start = time.monotonic()
    base = resolve_endpoint(endpoint)
    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
    if isinstance(cached, str) and os.path.isfile(cached):
        path = Path(cached)
        return DownloadResult(path, repo_id, filename, path.stat().st_size, 0.0, cached=True)
    _check_offline(offline, base)
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled(_("download of {filename} cancelled", filename=filename))
    size = remote_size(repo_id, filename, revision=revision, endpoint=base, token=token)
    if size is not None:
        free = free_disk(cache)
        if free < size + DISK_MARGIN:
            raise NotEnoughDisk(
                _("not enough disk space for {filename}: it needs {value:.2f} GiB, {value2:.2f} "
                  "GiB is free at {cache}; free some space or set HF_HUB_CACHE",
                  filename=filename, value=size / 2**30, value2=free / 2**30, cache=cache)
            )

    def bar(**kwargs: Any) -> _Progress:
        return _Progress(filename, progress, cancel, **kwargs)

    try:
        with _online():
            local = hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache, endpoint=base,
                token=token, tqdm_class=cast(Any, bar),
            )
    except DownloadCancelled:
        raise
    except Exception as exc:
        raise _translate(exc, base, repo_id, filename) from None
    path = Path(str(local))
    return DownloadResult(
        path, repo_id, filename, path.stat().st_size, time.monotonic() - start, cached=False
    )
