"""Walk folders, read and chunk the files that changed, keep the chunks of those that did not.

Incremental: a file whose mtime and size match the last index is not opened; one whose
bytes hash the same is not re-chunked. Files gone from a folder that was walked are dropped.
Bad input (binary, unreadable, undecodable, too large, FIFOs, symlink loops, folders that
vanish mid-walk, PDFs without text) is reported in one line each and skipped; a file that
was indexed before and cannot be read now keeps its old chunks.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tui.display import count, printable
from tui.i18n import _
from tui.kb import segments
from tui.kb.chunking import Chunk, chunk_units, tokenize
from tui.kb.extract import SkipFile, extract, kind_of

MAX_FILE_BYTES = 20 * 1024 * 1024
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages-skip", ".git", ".hg",
                       ".svn", ".tox", ".venv", "venv", ".mypy_cache", ".ruff_cache",
                       ".pytest_cache", "dist-info"})


class ReadError(Exception):
    """The file could not be read now (permissions, I/O): an older index of it is kept."""


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    chunks: int
    elapsed_s: float
    eta_s: float | None
    current: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class IngestReport:
    files_total: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: int = 0
    files_read: int = 0
    """Files opened this run (the unchanged ones are not)."""
    chunks_new: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    problems: list[str] = field(default_factory=list)
    """One line per file or folder skipped or not readable."""

    def summary(self) -> str:
        parts = [count(self.files_total, "file"), count(self.chunks_total, "chunk")]
        for label, n in (("new", self.files_new), ("changed", self.files_changed),
                         ("unchanged", self.files_unchanged), ("deleted", self.files_deleted),
                         ("skipped", self.files_skipped)):
            if n:
                parts.append(f"{n} {label}")
        rate = self.chunks_new / self.seconds if self.seconds > 0 else 0.0
        parts.append(_("{seconds:.1f} s ({rate:.0f} new chunks/s)",
                       seconds=self.seconds, rate=rate))
        if self.cancelled:
            parts.append("cancelled")
        return ", ".join(parts)


@dataclass
class Walk:
    files: list[tuple[Path, os.stat_result]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    """Folders that could not be listed (other than vanished ones): files under them that
    were indexed before are kept."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _valid_name(p: Path) -> bool:
    """A name that is valid UTF-8 (Python keeps other bytes as lone surrogates, which
    cannot be written to the index, shown, or sent to a model)."""
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def walk(roots: Sequence[Path], *, follow_links: bool = False) -> Walk:
    """Regular-looking files under ``roots`` (a root may itself be a file), hidden files and
    ``SKIP_DIRS`` left out, each directory visited once (symlink loops reported).

    A symlink that leads out of the folder given (``/etc/shadow``, ``..``) is skipped with
    one line unless ``follow_links``; one that stays inside it is followed. A name that is
    not valid UTF-8 is skipped with one line."""
    out = Walk()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def escapes(p: Path, root: str) -> bool:
        """``p`` is a link (or under one) that resolves outside ``root``: say so."""
        if follow_links or not p.is_symlink():
            return False
        target = os.path.realpath(p)
        if _inside(target, root):
            return False
        out.problems.append(_("{printable}: a link out of {printable2} (to {printable3}), "
                              "skipped (--follow-links follows it)",
                              printable=printable(str(p)), printable2=printable(root),
                              printable3=printable(target)))
        return True

    def visit_dir(d: Path, root: str) -> None:
        try:
            st = d.stat()
        except FileNotFoundError:
            out.problems.append(_("{printable}: folder vanished during ingest",
                                  printable=printable(str(d))))
            return
        except OSError as exc:
            out.problems.append(_("{printable}: cannot open folder ({value})",
                                  printable=printable(str(d)), value=exc.strerror or exc))
            out.incomplete.append(str(d))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            out.problems.append(_("{printable}: symlink loop or folder seen twice, skipped",
                                  printable=printable(str(d))))
            return
        seen_dirs.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            out.problems.append(_("{printable}: folder vanished during ingest",
                                  printable=printable(str(d))))
            return
        except OSError as exc:
            out.problems.append(_("{printable}: cannot list folder ({value})",
                                  printable=printable(str(d)), value=exc.strerror or exc))
            out.incomplete.append(str(d))
            return
        for e in entries:
            if e.name.startswith(".") or e.name in SKIP_DIRS or e.name.endswith(".dist-info"):
                continue
            p = Path(e.path)
            if not _valid_name(p):
                out.problems.append(_("{printable}: the name is not valid UTF-8, skipped "
                                      "(rename it to index it)", printable=printable(str(p))))
                continue
            if escapes(p, root):
                continue
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                visit_dir(p, root)
            else:
                visit_file(p, root)

    def visit_file(p: Path, root: str) -> None:
        try:
            st = p.stat()
        except FileNotFoundError:
            if p.is_symlink():
                out.problems.append(_("{printable}: broken symlink, skipped",
                                      printable=printable(str(p))))
            else:
                out.problems.append(_("{printable}: vanished during ingest",
                                      printable=printable(str(p))))
            return
        except OSError as exc:  # ELOOP on a self-referencing link, EACCES...
            out.problems.append(_("{printable}: cannot stat ({value}), skipped",
                                  printable=printable(str(p)), value=exc.strerror or exc))
            return
        if stat.S_ISDIR(st.st_mode):
            visit_dir(p, root)
            return
        key = str(p)
        if key not in seen_files:
            seen_files.add(key)
            out.files.append((p, st))

    for given in roots:
        path = Path(given).expanduser().absolute()
        if not _valid_name(path):
            out.problems.append(_("{printable}: the name is not valid UTF-8, skipped (rename it "
                                  "to index it)", printable=printable(str(path))))
            continue
        # the folder given is the boundary, wherever it really is (it may be a link itself)
        visit_file(path, os.path.realpath(path))
    return out


def read_bytes(path: Path, st: os.stat_result, max_bytes: int) -> bytes:
    """The file's bytes. ``SkipFile`` for what is never indexed (not a regular file, over the
    size limit), ``ReadError`` for what cannot be read now, ``FileNotFoundError`` if gone."""
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile(_("not a regular file (FIFO, socket or device)"))
    if st.st_size > max_bytes:
        raise SkipFile(_("too large ({value:.0f} MiB > {value2:.0f} MiB limit)",
                         value=st.st_size / 2**20, value2=max_bytes / 2**20))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ReadError(_("unreadable ({value})", value=exc.strerror or exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkipFile(_("not a regular file (FIFO, socket or device)"))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ReadError(_("unreadable ({value})", value=exc.strerror or exc)) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SkipFile(_("too large (over the {value:.0f} MiB limit)", value=max_bytes / 2**20))
    return data


@dataclass
class FileResult:
    path: str
    st: os.stat_result
    sha1: str
    kind: str
    chunks: list[Chunk] | None
    """None: unchanged (bytes hash the same), keep the old chunks."""
    tokens: list[list[str]] | None = None
    skipped: str = ""


def process_file(path: Path, st: os.stat_result, old_sha1: str | None,
                 max_bytes: int) -> FileResult:
    """Read, hash, extract and chunk one file. Raises ``SkipFile``/``ReadError``/OSError."""
    kind = kind_of(path)
    if kind == "binary":
        raise SkipFile(_("binary file"))
    if kind in segments.EXTRACTORS and st.st_size > segments.SEGMENT_BYTES:
        if not stat.S_ISREG(st.st_mode):
            raise SkipFile(_("not a regular file (FIFO, socket or device)"))
        if st.st_size > max_bytes:
            raise SkipFile(_("too large ({value:.0f} MiB > {value2:.0f} MiB limit)",
                             value=st.st_size / 2**20, value2=max_bytes / 2**20))
        try:
            if old_sha1 is not None:  # indexed before: maybe only its mtime changed
                sha1 = segments.file_sha1(path, max_bytes)
                if sha1 == old_sha1:
                    return FileResult(str(path), st, sha1, kind, None)
            sha1, chunks, tokens = segments.chunk_file(path, kind, max_bytes)
            return FileResult(str(path), st, sha1, kind, chunks, tokens)
        except segments.NotStreamable:
            pass  # read whole below
    data = read_bytes(path, st, max_bytes)
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 == old_sha1:
        return FileResult(str(path), st, sha1, kind, None)
    kind, units = extract(path, data)
    chunks = chunk_units(str(path), units, page=kind == "pdf")
    tokens = [tokenize(c.heading + "\n" + c.text) for c in chunks]
    return FileResult(str(path), st, sha1, kind, chunks, tokens)


def iter_results(
    files: Sequence[tuple[Path, os.stat_result]],
    old_sha1: Callable[[str, os.stat_result], str | bool | None],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Path, os.stat_result, FileResult | Exception | None]]:
    """For each file: None when ``old_sha1`` says it is unchanged (True), else the result of
    ``process_file`` or the exception it raised. Stops early when ``cancel`` is set."""
    t0 = time.perf_counter()
    chunks = 0
    total = len(files)
    last = 0.0
    for n, (path, st) in enumerate(files, 1):
        if cancel is not None and cancel.is_set():
            return
        prev = old_sha1(str(path), st)
        result: FileResult | Exception | None
        if prev is True:
            result = None
        else:
            try:
                result = process_file(path, st, prev if isinstance(prev, str) else None,
                                      max_bytes)
                chunks += len(result.chunks or ())
            except (SkipFile, ReadError, OSError) as exc:
                result = exc
            except Exception as exc:  # a parser bug must not stop the whole ingest
                result = SkipFile(_("failed to extract ({name}: {exc})",
                                    name=type(exc).__name__, exc=exc)[:160])
        yield path, st, result
        now = time.perf_counter()
        if progress is not None and (now - last >= 0.05 or n == total):
            last = now
            elapsed = now - t0
            eta = elapsed / n * (total - n) if n else None
            progress(Progress(n, total, chunks, elapsed, eta, str(path)))
