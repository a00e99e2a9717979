"""A model's vocabulary read from its GGUF file, to turn token ids back into text.

``POST /v1/embeddings`` takes token arrays, as llama-server does: ids of the served model's
own vocabulary. The engine embeds text, so the ids are decoded here (byte-level BPE as GPT-2
and SmolLM2 write it, SentencePiece's ``▁`` and ``<0xNN>`` byte tokens, WordPiece's ``##``)
and tokenized again by the worker, which gives the same tokens back for ordinary text.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tui.i18n import _

_STRING, _ARRAY = 8, 9
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
CONTROL = 3
"""llama.cpp's token type of control tokens (``<|im_start|>``...), left out of the text."""


class VocabError(Exception):
    pass


@dataclass(frozen=True)
class Vocabulary:
    model: str
    """tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece), "bert"..."""
    tokens: tuple[str, ...]
    control: frozenset[int]
    space_prefix: bool = True
    """SentencePiece put a space before the text when tokenizing (removed again here)."""

    def decode(self, ids: list[int]) -> str:
        bad = next((i for i in ids if not 0 <= i < len(self.tokens)), None)
        if bad is not None:
            raise VocabError(_("token id {bad} is not in this model's vocabulary (0..{value})",
                               bad=bad, value=len(self.tokens) - 1))
        pieces = [self.tokens[i] for i in ids if i not in self.control]
        if self.model == "gpt2":
            table = _byte_decoder()
            data = bytes(table.get(ch, 0x3F) for piece in pieces for ch in piece)
            return data.decode("utf-8", "replace")
        if self.model == "llama":
            out = bytearray()
            for piece in pieces:
                match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
                out += bytes([int(match.group(1), 16)]) if match else piece.replace(
                    "\u2581", " ").encode()
            text = out.decode("utf-8", "replace")
            return text.removeprefix(" ") if self.space_prefix else text
        text = "".join(p[2:] if p.startswith("##") else " " + p for p in pieces)
        return text.strip()


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes, reversed."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


@lru_cache(maxsize=4)
def vocabulary(path: str) -> Vocabulary:
    """The vocabulary of the GGUF at ``path`` (cached: a 150k vocabulary takes a moment)."""
    try:
        with Path(path).open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _read(buf)
    except (OSError, ValueError, struct.error, IndexError) as exc:
        raise VocabError(_("cannot read the vocabulary of {path}: {exc}",
                           path=path, exc=exc)) from None


def _read(buf: mmap.mmap) -> Vocabulary:
    if buf[:4] != b"GGUF":
        raise VocabError(_("not a GGUF file"))
    pos = 8
    (n_tensors, n_kv) = struct.unpack_from("<QQ", buf, pos)
    pos += 16
    model, tokens, types = "", [], []
    space_prefix = True

    def string(at: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", buf, at)
        return bytes(buf[at + 8:at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

    def skip(vtype: int, at: int) -> int:
        if vtype == _STRING:
            return at + 8 + int(struct.unpack_from("<Q", buf, at)[0])
        if vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", buf, at)
            at += 12
            if etype in _SIZES:
                return at + _SIZES[etype] * int(count)
            for _index in range(count):
                at = skip(etype, at)
            return at
        return at + _SIZES[vtype]

    for _index in range(n_kv):
        key, pos = string(pos)
        (vtype,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if key == "tokenizer.ggml.model" and vtype == _STRING:
            model, pos = string(pos)
        elif key == "tokenizer.ggml.tokens" and vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            for _index in range(count):
                token, pos = string(pos)
                tokens.append(token)
        elif key == "tokenizer.ggml.add_space_prefix" and vtype == 7:
            space_prefix = bool(buf[pos])
            pos += 1
        elif key == "tokenizer.ggml.token_type" and vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            types = list(struct.unpack_from(f"<{count}i", buf, pos)) if etype == 5 else []
            pos = skip(_ARRAY, pos - 12)
        else:
            pos = skip(vtype, pos)
    del n_tensors
    if not tokens:
        raise VocabError(_("the GGUF holds no vocabulary"))
    control = frozenset(i for i, t in enumerate(types) if t == CONTROL)
    return Vocabulary(model, tuple(tokens), control, space_prefix)
