"""Conversation KV states kept on disk, so a reopened conversation is not evaluated again.

The worker saves the evaluated state of the sequence it is leaving (another conversation's
prompt is about to replace it, or the model is unloaded) and, when a prompt shares little with
what the cache holds, restores the saved state that shares the longest prefix with it. A state
is a file of its own: a header (the format, the model's identity and the parameters that shape
the KV cache, the tokens it holds, the payload's SHA-256) and llama.cpp's sequence state.

- Files are written whole (temporary file, fsync, rename), mode 0600, in folders 0700.
- The folder has a byte budget; the least recently used files go first (use touches a file).
- A state of another model file, other cache-shaping parameters or another lmdesk format lives
  in another identity folder and is never read; within one, only the tokens a prompt shares
  with the state are kept (the rest of the cache is cut), so a changed prefix is never used.
- A file that does not parse, fails its checksum or that llama.cpp refuses is deleted and the
  reply carries a note; the prompt is then evaluated as if nothing had been saved.

Pure Python and file handling here; the worker passes llama.cpp's bytes in and out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"LMDESK-KV\x00"
FORMAT = 1
MIN_TOKENS = 256
"""Shorter sequences are evaluated again quickly: not worth a file."""
SUFFIX = ".kv"


class DamagedState(Exception):
    """A state file that cannot be used; the message says why, in a few words."""


@dataclass(frozen=True)
class SavedState:
    path: Path
    tokens: tuple[int, ...]
    size: int


def identity_key(identity: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **identity}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tokens_key(tokens: Sequence[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()[:24]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class StateStore:
    """The saved states of one model identity, inside a budgeted folder shared by all."""

    def __init__(self, root: Path, identity: dict[str, Any], budget_bytes: int) -> None:
        self.root = root
        self.identity = {"format": FORMAT, **identity}
        self.folder = root / identity_key(identity)
        self.budget = budget_bytes
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- reading -------------------------------------------------------------------------

    def candidates(self) -> list[SavedState]:
        """The states of this identity (headers only)."""
        out = []
        for path in sorted(self.folder.glob(f"*{SUFFIX}")) if self.folder.is_dir() else []:
            try:
                header, _ = _read_header(path)
                tokens = tuple(int(t) for t in header["tokens"])
            except (DamagedState, OSError, KeyError, TypeError, ValueError):
                continue  # reported when it is the one chosen; a bad header is never chosen
            out.append(SavedState(path, tokens, path.stat().st_size))
        return out

    def best(self, prompt: Sequence[int], at_least: int) -> tuple[SavedState, int] | None:
        """The state sharing the longest prefix with ``prompt`` (more than ``at_least``
        tokens, and at least MIN_TOKENS), and that length."""
        best: tuple[SavedState, int] | None = None
        for state in self.candidates():
            shared = common_prefix(state.tokens, prompt)
            if shared >= MIN_TOKENS and shared > at_least and (best is None or shared > best[1]):
                best = (state, shared)
        return best

    def load(self, state: SavedState) -> bytes:
        """The payload of a state, checked; raises DamagedState (the file is then deleted)."""
        self.wait()
        try:
            header, offset = _read_header(state.path)
            if header.get("identity") != self.identity:
                raise DamagedState("it belongs to another model or parameters")
            with state.path.open("rb") as f:
                f.seek(offset)
                payload = f.read()
            if (len(payload) != header.get("payload_len")
                    or hashlib.sha256(payload).hexdigest() != header.get("sha256")):
                raise DamagedState("its checksum does not match")
        except (OSError, DamagedState) as exc:
            self.discard(state.path)
            raise DamagedState(str(exc)) from None
        with contextlib.suppress(OSError):
            os.utime(state.path)  # recently used
        return payload

    def discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    # --- writing -------------------------------------------------------------------------

    def has(self, tokens: Sequence[int]) -> bool:
        path = self.folder / f"{_tokens_key(tokens)}{SUFFIX}"
        if path.exists():
            with contextlib.suppress(OSError):
                os.utime(path)
            return True
        return False

    def save(self, tokens: Sequence[int], payload: bytes, *, wait: bool = False) -> None:
        """Write a state in the background (``wait``: before returning); one write at a time."""
        self.wait()
        job = threading.Thread(target=self._write, args=(tuple(tokens), payload), daemon=True,
                               name="kv-state-writer")
        self._writer = job
        job.start()
        if wait:
            self.wait()

    def wait(self) -> None:
        job = self._writer
        if job is not None:
            job.join()
            self._writer = None

    def _write(self, tokens: tuple[int, ...], payload: bytes) -> None:
        with self._lock:
            try:
                _mkdir_private(self.root)
                _mkdir_private(self.folder)
                path = self.folder / f"{_tokens_key(tokens)}{SUFFIX}"
                header = json.dumps({
                    "identity": self.identity, "tokens": list(tokens),
                    "payload_len": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest()}).encode()
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + struct.pack("<I", len(header)) + header)
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self.evict()
            except OSError:
                pass  # a full or read-only disk: the conversation is evaluated next time

    def evict(self) -> None:
        """Delete the least recently used states (of any identity) beyond the budget."""
        files = []
        for path in self.root.glob(f"*/*{SUFFIX}"):
            with contextlib.suppress(OSError):
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.budget:
                break
            self.discard(path)
            total -= size

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(f"*/*{SUFFIX}"))


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    with path.open("rb") as f:
        head = f.read(len(MAGIC) + 4)
        if len(head) != len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise DamagedState("it is not a state file")
        (length,) = struct.unpack("<I", head[len(MAGIC):])
        if length > 64 * 1024 * 1024:
            raise DamagedState("its header is damaged")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise DamagedState("its header is damaged") from None
    if not isinstance(header, dict):
        raise DamagedState("its header is damaged")
    return header, len(MAGIC) + 4 + length
