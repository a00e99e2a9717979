"""A large text file indexed in segments, so its memory stays bounded.

Read whole, a 200 MB log cost its bytes, their decoded text, a list of its lines and the
units made of them at once (3 GB, 84 s). Here the bytes are read in blocks, hashed and
decoded as they come, and cut into segments of about ``SEGMENT_CHARS`` at a paragraph
boundary; each segment is extracted and chunked on its own, its line numbers carried on.
Only the chunks (and their tokens) are kept, which the index holds anyway.

A heading that opens one segment does not name the chunks of the next (Markdown).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from tui.i18n import _
from tui.kb.chunking import Chunk, chunk_units, tokenize
from tui.kb.extract import (
    MAX_BAD_CHAR_RATIO,
    SNIFF_BYTES,
    SkipFile,
    Unit,
    code_units,
    html_units,
    markdown_units,
    text_units,
)

SEGMENT_BYTES = 4 * 1024 * 1024
"""Files larger than this are read in segments."""
SEGMENT_CHARS = 2 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024
EXTRACTORS: dict[str, Callable[[str], list[Unit]]] = {
    "text": text_units, "markdown": markdown_units, "code": code_units, "html": html_units,
}


class NotStreamable(Exception):
    """This file is read whole after all (UTF-16 text)."""


def _blocks(path: Path, max_bytes: int) -> Iterator[bytes]:
    from tui.kb.ingest import ReadError

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ReadError(_("unreadable ({value})", value=exc.strerror or exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkipFile(_("not a regular file (FIFO, socket or device)"))
        total = 0
        while True:
            try:
                block = os.read(fd, BLOCK_BYTES)
            except OSError as exc:
                raise ReadError(_("unreadable ({value})", value=exc.strerror or exc)) from None
            if not block:
                return
            total += len(block)
            if total > max_bytes:
                raise SkipFile(_("too large (over the {value:.0f} MiB limit)",
                                 value=max_bytes / 2**20))
            yield block
    finally:
        os.close(fd)


def file_sha1(path: Path, max_bytes: int) -> str:
    digest = hashlib.sha1()
    for block in _blocks(path, max_bytes):
        digest.update(block)
    return digest.hexdigest()


def _cut(text: str) -> int:
    """Where to end a segment of ``text``: after its last blank line, else its last line."""
    at = text.rfind("\n\n")
    if at > 0:
        return at + 2
    at = text.rfind("\n")
    return at + 1 if at > 0 else len(text)


def chunk_file(path: Path, kind: str, max_bytes: int
               ) -> tuple[str, list[Chunk], list[list[str]]]:
    """(SHA-1 of the bytes, chunks, their tokens) of a large text file, in segments.
    Raises ``SkipFile`` (binary, undecodable, too large), ``ReadError``, ``NotStreamable``."""
    extract = EXTRACTORS[kind]
    digest = hashlib.sha1()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks: list[Chunk] = []
    tokens: list[list[str]] = []
    pending = ""
    line = 0
    chars = bad = 0
    first = True

    def segment(text: str) -> None:
        nonlocal line
        units = [replace(u, start=u.start + line, end=u.end + line) for u in extract(text)]
        for chunk in chunk_units(str(path), units):
            chunks.append(chunk)
            tokens.append(tokenize(chunk.heading + "\n" + chunk.text))
        line += text.count("\n")

    for block in _blocks(path, max_bytes):
        digest.update(block)
        if first:
            first = False
            if block[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise NotStreamable("UTF-16")
            if b"\x00" in block[:SNIFF_BYTES]:
                raise SkipFile(_("binary file"))
            if block.startswith(codecs.BOM_UTF8):
                block = block[len(codecs.BOM_UTF8):]
        text = decoder.decode(block)
        chars += len(text)
        bad += text.count("\ufffd")
        pending += text
        while len(pending) >= SEGMENT_CHARS:
            at = _cut(pending[:SEGMENT_CHARS])
            segment(pending[:at])
            pending = pending[at:]
    pending += decoder.decode(b"", final=True)
    if bad > max(8, chars * MAX_BAD_CHAR_RATIO):
        raise SkipFile(_("undecodable text (not UTF-8)"))
    if pending:
        segment(pending)
    return digest.hexdigest(), chunks, tokens
