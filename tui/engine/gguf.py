"""A fast GGUF header reader: the metadata a model list needs, without loading the model.

``gguf.GGUFReader`` parses every array (a 262k-token vocabulary takes it 21 s); this reader
keeps scalars, records only the length of arrays, and skips their bodies. It also reads the
tensor table, which gives the parameter count, the bytes of weights and the end of the data,
so a truncated file is caught before llama.cpp sees it.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.i18n import _

MAGIC = b"GGUF"

# GGUF value types
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = 8, 9, 10, 11, 12
_SCALAR_FORMATS: dict[int, str] = {
    _UINT8: "<B", _INT8: "<b", _UINT16: "<H", _INT16: "<h", _UINT32: "<I", _INT32: "<i",
    _FLOAT32: "<f", _BOOL: "<?", _UINT64: "<Q", _INT64: "<q", _FLOAT64: "<d",
}

# ggml tensor types: id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# general.file_type -> the quantization name users know
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}


class GGUFError(Exception):
    """The file is not a readable GGUF model; the message says why and what to do."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        _name, block, size = GGML_TYPES.get(self.type_id, ("?", 1, 0))
        return self.n_elements // block * size


@dataclass(frozen=True)
class GGUFHeader:
    """What the header of a GGUF file says. Arrays appear in ``metadata`` as their length."""

    path: str
    file_size: int
    version: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    data_offset: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        name = self.metadata.get("general.name")
        return str(name) if name else Path(self.path).stem

    @property
    def context_length(self) -> int:
        return int(self.arch_key("context_length", 0) or 0)

    @property
    def n_layers(self) -> int:
        return int(self.arch_key("block_count", 0) or 0)

    @property
    def embedding_length(self) -> int:
        return int(self.arch_key("embedding_length", 0) or 0)

    @property
    def n_heads(self) -> int:
        return _first_int(self.arch_key("attention.head_count", 0))

    @property
    def n_kv_heads(self) -> int:
        return _first_int(self.arch_key("attention.head_count_kv", self.n_heads))

    @property
    def key_length(self) -> int:
        default = self.embedding_length // self.n_heads if self.n_heads else 0
        return int(self.arch_key("attention.key_length", default) or 0)

    @property
    def value_length(self) -> int:
        return int(self.arch_key("attention.value_length", self.key_length) or 0)

    @property
    def feed_forward_length(self) -> int:
        """FFN width; the largest when the file gives one per layer."""
        value = self.arch_key("feed_forward_length", 0)
        if isinstance(value, list | tuple):
            return int(max(value)) if value else 0
        return int(value or 0)

    @property
    def sliding_window(self) -> int:
        """Sliding-window attention span in tokens (0: every layer attends to the whole context)."""
        return int(self.arch_key("attention.sliding_window", 0) or 0)

    @property
    def n_merges(self) -> int:
        """BPE merges in the tokenizer (their tables cost memory once loaded)."""
        return self.array_lengths.get("tokenizer.ggml.merges", 0)

    @property
    def chat_template(self) -> str | None:
        template = self.metadata.get("tokenizer.chat_template")
        return str(template) if template else None

    @property
    def vocab_size(self) -> int:
        return self.array_lengths.get("tokenizer.ggml.tokens", 0)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def data_end(self) -> int:
        """Where the last tensor's data ends: the smallest size a complete file can have."""
        if not self.tensors:
            return self.data_offset
        return self.data_offset + max(t.offset + t.n_bytes for t in self.tensors)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        counts = Counter(t.type_id for t in self.tensors if len(t.shape) >= 2)
        if not counts:
            return "unknown"
        return GGML_TYPES.get(counts.most_common(1)[0][0], ("unknown", 0, 0))[0]


def _first_int(value: Any) -> int:
    if isinstance(value, list | tuple):
        return int(value[0]) if value else 0
    return int(value or 0)


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path
        self.size = len(buf)

    def need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise GGUFError(
                _("{path}: truncated GGUF header (ends at byte {size}); the download is "
                  "incomplete: fetch the file again", path=self.path, size=self.size)
            )

    def unpack(self, fmt: str, n: int) -> Any:
        self.need(n)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def string(self) -> str:
        n = self.u64()
        self.need(n)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        self.need(n)
        self.pos += n

    def value(self, vtype: int) -> Any:
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is not None:
            return self.unpack(fmt, struct.calcsize(fmt))
        if vtype == _STRING:
            return self.string()
        raise GGUFError(_("{path}: unknown metadata value type {vtype}; is this a GGUF file?",
                          path=self.path, vtype=vtype))


_SMALL_ARRAY = 64  # arrays up to this length are kept (per-layer head counts and the like)


_U64 = struct.Struct("<Q")


def _skip_strings(cur: _Cursor, count: int) -> None:
    """Skip ``count`` length-prefixed strings: the hot loop of a header read (a vocabulary is
    100k+ strings), so it stays local-variable only."""
    unpack, buf, pos, size = _U64.unpack_from, cur.buf, cur.pos, cur.size
    for _index in range(count):
        if pos + 8 > size:
            cur.pos = pos
            cur.need(8)
        pos += 8 + unpack(buf, pos)[0]
    cur.pos = pos
    cur.need(0)


def _read_array(cur: _Cursor) -> tuple[Any, int]:
    etype = cur.u32()
    count = cur.u64()
    fmt = _SCALAR_FORMATS.get(etype)
    if count <= _SMALL_ARRAY and etype != _ARRAY:
        return [cur.value(etype) for _ in range(count)], count
    if fmt is not None:
        nbytes = struct.calcsize(fmt) * count
        cur.need(nbytes)
        cur.pos += nbytes
    elif etype == _STRING:
        _skip_strings(cur, count)
    elif etype == _ARRAY:
        for _index in range(count):
            _read_array(cur)
    else:
        raise GGUFError(_("{path}: unknown array element type {etype}; is this a GGUF file?",
                          path=cur.path, etype=etype))
    return None, count


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Read the metadata and tensor table of a GGUF file, checking that it is complete."""
    p = Path(path)
    name = str(p)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise GGUFError(
            _("{name}: no such file; check the path or run `lmdesk models list`", name=name)
        ) from None
    except OSError as exc:
        raise GGUFError(_("{name}: cannot read ({strerror})",
                          name=name, strerror=exc.strerror)) from None
    if p.is_dir():
        raise GGUFError(_("{name}: is a folder, not a GGUF file", name=name))
    if size == 0:
        raise GGUFError(_("{name}: empty file (0 bytes); the download failed: fetch it again",
                          name=name))
    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, name, size)
    except PermissionError:
        raise GGUFError(_("{name}: permission denied; check the file's permissions",
                          name=name)) from None
    except (OSError, ValueError) as exc:
        raise GGUFError(_("{name}: cannot read ({exc})", name=name, exc=exc)) from None


def _parse(buf: mmap.mmap, name: str, size: int) -> GGUFHeader:
    if buf[:4] != MAGIC:
        raise GGUFError(
            _("{name}: not a GGUF model file (it starts with {bytes!r}); lmdesk runs GGUF "
              "models: convert it or download a GGUF build", name=name, bytes=bytes(buf[:4]))
        )
    cur = _Cursor(buf, name)
    cur.pos = 4
    version = cur.u32()
    if version not in (2, 3):
        raise GGUFError(_("{name}: GGUF version {version} is not supported (2 and 3 are)",
                          name=name, version=version))
    n_tensors = cur.u64()
    n_kv = cur.u64()
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise GGUFError(_("{name}: damaged GGUF header (implausible counts); fetch the file "
                          "again", name=name))
    metadata: dict[str, Any] = {}
    arrays: dict[str, int] = {}
    for _index in range(n_kv):
        key = cur.string()
        vtype = cur.u32()
        if vtype == _ARRAY:
            value, count = _read_array(cur)
            arrays[key] = count
            if value is not None:
                metadata[key] = value
        else:
            metadata[key] = cur.value(vtype)
    tensors = []
    for _index in range(n_tensors):
        tname = cur.string()
        n_dims = cur.u32()
        if n_dims > 8:
            raise GGUFError(_("{name}: damaged tensor table ({tname!r} has {n_dims} dimensions)",
                              name=name, tname=tname, n_dims=n_dims))
        shape = tuple(cur.u64() for _ in range(n_dims))
        type_id = cur.u32()
        offset = cur.u64()
        tensors.append(TensorInfo(tname, shape, type_id, offset))
    alignment = int(metadata.get("general.alignment", 32) or 32)
    data_offset = (cur.pos + alignment - 1) // alignment * alignment
    header = GGUFHeader(name, size, version, metadata, arrays, tuple(tensors), data_offset)
    unknown = {t.type_id for t in tensors} - set(GGML_TYPES)
    if not unknown and header.data_end > size:
        raise GGUFError(
            _("{name}: truncated GGUF ({size:,} bytes, its tensors need {data_end:,}); the "
              "download is incomplete: fetch the file again",
              name=name, size=size, data_end=header.data_end)
        )
    return header
