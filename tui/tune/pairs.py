"""Instruction/response pairs: read from JSONL or CSV, from a persona, or from marked replies.

Accepted shapes, one pair per JSONL line or CSV row:
- ``{"instruction": ..., "response": ...}`` (also prompt/completion, question/answer,
  input/output), with an optional ``"system"``;
- ``{"messages": [{"role": "system"?}, {"role": "user"}, {"role": "assistant"}]}``, the chat
  format ``lmdesk`` exports a persona's examples in.
A CSV file needs a header row naming its columns the same way. Every problem names the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.tune.errors import TuneError

INSTRUCTION_KEYS = ("instruction", "prompt", "question", "input")
RESPONSE_KEYS = ("response", "completion", "answer", "output")
MAX_FILE_BYTES = 64 << 20


@dataclass(frozen=True)
class Pair:
    instruction: str
    response: str
    system: str | None = None
    line: int = field(default=0, compare=False)
    """Where the pair came from in its file (1-based), 0 when it came from elsewhere."""

    def to_dict(self) -> dict[str, str]:
        out = {"instruction": self.instruction, "response": self.response}
        if self.system:
            out["system"] = self.system
        return out


def _pick(row: Mapping[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in row:
            return key, row[key]
    return None, None


def _pair_from_fields(row: Mapping[str, Any], where: str) -> Pair:
    if "messages" in row:
        return _pair_from_messages(row["messages"], where)
    ikey, instruction = _pick(row, INSTRUCTION_KEYS)
    rkey, response = _pick(row, RESPONSE_KEYS)
    if ikey is None or rkey is None:
        missing = "an instruction" if ikey is None else "a response"
        raise TuneError(_("{where}: no {missing} (name the fields 'instruction' and 'response', "
                          "or give 'messages' in the chat format)", where=where, missing=missing))
    system = row.get("system")
    for key, value in ((ikey, instruction), (rkey, response), ("system", system)):
        if value is not None and not isinstance(value, str):
            raise TuneError(_("{where}: {key!r} must be text, got {name}",
                              where=where, key=key, name=type(value).__name__))
    return _checked(instruction, response, system or None, where)


def _pair_from_messages(messages: Any, where: str) -> Pair:
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise TuneError(_("{where}: 'messages' must be a list of {{role, content}} objects",
                          where=where))
    roles = [m.get("role") for m in messages]
    system = None
    if roles[:1] == ["system"]:
        system = messages[0].get("content")
        messages, roles = messages[1:], roles[1:]
    if roles != ["user", "assistant"]:
        raise TuneError(_("{where}: 'messages' must be one user turn then one assistant turn "
                          "(an optional system turn first), got roles {roles}",
                          where=where, roles=roles))
    contents = [m.get("content") for m in messages]
    if not all(isinstance(c, str) for c in contents) or (
            system is not None and not isinstance(system, str)):
        raise TuneError(_("{where}: every message's 'content' must be text", where=where))
    return _checked(contents[0], contents[1], system or None, where)


def _checked(instruction: str, response: str, system: str | None, where: str) -> Pair:
    if not instruction.strip():
        raise TuneError(_("{where}: the instruction is empty", where=where))
    if not response.strip():
        raise TuneError(_("{where}: the response is empty", where=where))
    return Pair(instruction.strip(), response.strip(), system.strip() if system else None)


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TuneError(_("{path}: no such file", path=path)) from None
    except OSError as exc:
        raise TuneError(_("{path}: cannot read ({strerror})",
                          path=path, strerror=exc.strerror)) from None
    if path.is_dir():
        raise TuneError(_("{path}: is a folder; give a JSONL or CSV file of pairs", path=path))
    if size > MAX_FILE_BYTES:
        raise TuneError(_("{path}: {value} MiB is too large for a pairs file (at most {value2} "
                          "MiB)", path=path, value=size >> 20, value2=MAX_FILE_BYTES >> 20))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TuneError(_("{path}: cannot read ({strerror})",
                          path=path, strerror=exc.strerror)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TuneError(_("{path} line {line}: not UTF-8 text; save the file as UTF-8",
                          path=path, line=line)) from None


def parse_jsonl(text: str, name: str) -> list[Pair]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TuneError(_("{where}: not valid JSON ({msg} at column {colno})",
                              where=where, msg=exc.msg, colno=exc.colno)) from None
        if not isinstance(row, dict):
            raise TuneError(_('{where}: expected a JSON object like {{"instruction": "...", '
                              '"response": "..."}}', where=where))
        pairs.append(replace(_pair_from_fields(row, where), line=number))
    return pairs


def parse_csv(text: str, name: str) -> list[Pair]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise TuneError(_("{name} line 1: not a readable CSV header ({exc})",
                          name=name, exc=exc)) from None
    if not header:
        return []
    if not (set(header) & set(INSTRUCTION_KEYS)) or not (set(header) & set(RESPONSE_KEYS)):
        raise TuneError(_("{name} line 1: the header must name an 'instruction' and a "
                          "'response' column, got {join}", name=name, join=', '.join(header)))
    reader.fieldnames = header
    pairs = []
    try:
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if None in row:
                raise TuneError(_("{where}: more fields than the header has (quote text that "
                                  "contains commas)", where=where))
            if not any((v or "").strip() for v in row.values()):
                continue
            pair = _pair_from_fields({k: v or "" for k, v in row.items()}, where)
            pairs.append(replace(pair, line=reader.line_num))
    except csv.Error as exc:
        raise TuneError(_("{name} line {line_num}: not valid CSV ({exc})",
                          name=name, line_num=reader.line_num, exc=exc)) from None
    return pairs


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a ``.jsonl``/``.json`` or ``.csv`` file; ``TuneError`` names the line."""
    p = Path(path).expanduser()
    text = _read_text(p)
    if not text.strip():
        raise TuneError(_("{p}: no pairs (the file is empty)", p=p))
    pairs = parse_csv(text, str(p)) if p.suffix.lower() in (".csv", ".tsv") else parse_jsonl(
        text, str(p))
    if not pairs:
        raise TuneError(_("{p}: no pairs (only blank lines)", p=p))
    return pairs


def pairs_jsonl(pairs: Iterable[Pair]) -> str:
    """The canonical JSONL of ``pairs`` (what a run trains on, saved beside its adapter)."""
    return "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
