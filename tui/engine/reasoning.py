"""Splitting a streamed reply into its reasoning block and its answer.

Pure Python (no llama_cpp), so the worker, the remote engine and the tests share it. Two
families of markup:

- a pair of markers around the reasoning (``<think>…</think>`` and its cousins), which the
  model emits at the start of its reply or which the chat template's generation prompt has
  already opened (Qwen3, DeepSeek-R1), so the output starts inside the block;
- OpenAI's harmony format (gpt-oss): ``<|channel|>analysis<|message|>…<|end|>`` then
  ``<|start|>assistant<|channel|>final<|message|>…``.

Text arrives in arbitrary pieces: a marker split across two pieces is held back until it is
complete (or proven not to be a marker), so nothing of a marker ever leaks into either side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Part = Literal["reasoning", "answer"]
Piece = tuple[Part, str]


@dataclass(frozen=True)
class ReasoningFormat:
    """How one model family marks its reasoning."""

    name: str
    open: str
    close: str
    force_close: str
    """Text fed to the model to close the block when the reasoning budget is spent."""

    @property
    def markers(self) -> frozenset[str]:
        """Every marker string of the format (the worker renders these control tokens)."""
        if self.name == "harmony":
            return frozenset(HARMONY_MARKERS)
        return frozenset((self.open, self.close))


HARMONY_MARKERS = ("<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|constrain|>")
HARMONY = ReasoningFormat(
    "harmony", "<|channel|>analysis<|message|>", "<|end|>",
    "<|end|><|start|>assistant<|channel|>final<|message|>",
)
THINK_PAIRS = (
    ("<seed:think>", "</seed:think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("[THINK]", "[/THINK]"),
    ("<thinking>", "</thinking>"),
    ("<think>", "</think>"),
)
THINK = ReasoningFormat("think", "<think>", "</think>", "\n</think>\n\n")


def format_for_template(template: str | None) -> ReasoningFormat:
    """The reasoning markup a chat template names; ``<think>`` when it names none."""
    source = template or ""
    if "<|channel|>" in source:
        return HARMONY
    for open_marker, close_marker in THINK_PAIRS:
        if open_marker in source:
            return ReasoningFormat("think", open_marker, close_marker, f"\n{close_marker}\n\n")
    return THINK


def opens_reasoning(fmt: ReasoningFormat, prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open reasoning block (the template opened it)."""
    return fmt.name == "think" and prompt.rstrip().endswith(fmt.open)


def _held_prefix(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _could_be_markup(text: str) -> bool:
    return any(text.startswith(m) or m.startswith(text) for m in HARMONY_MARKERS)


class ReasoningSplitter:
    """Feed text pieces in order; get back (part, text) pieces with the markup removed."""

    def __init__(self, fmt: ReasoningFormat = THINK, *, started_inside: bool = False) -> None:
        self.fmt = fmt
        self._buf = ""
        self._header = ""
        if fmt.name == "harmony":
            self._state = "header"
        else:
            self._state = "reasoning_start" if started_inside else "start"
        self.seen_reasoning = started_inside

    @property
    def in_reasoning(self) -> bool:
        if self.fmt.name == "harmony" and self._state == "header":
            return "analysis" in self._header
        return self._state in ("reasoning", "reasoning_start")

    @property
    def answering(self) -> bool:
        return self._state in ("answer", "answer_start")

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        out: list[Piece] = []
        if self.fmt.name == "harmony":
            self._harmony(out)
        else:
            self._think(out)
        return [(part, t) for part, t in out if t]

    def close(self) -> list[Piece]:
        """The end of the stream: release whatever was held back."""
        rest, self._buf = self._buf, ""
        if not rest:
            return []
        if self._state in ("reasoning", "reasoning_start") or (
            self._state == "content" and "analysis" in self._header
        ):
            return [("reasoning", rest)]
        if self._state in ("header",):
            return []  # half a harmony header is markup, not answer
        if self._state == "start":
            return [("answer", rest)]
        if self._state == "answer_start":
            rest = rest.lstrip()
        return [("answer", rest)] if rest else []

    # --- <think> pairs -------------------------------------------------------------------

    def _think(self, out: list[Piece]) -> None:
        fmt = self.fmt
        while self._buf:
            state = self._state
            if state == "start":
                head = self._buf.lstrip()
                if head.startswith(fmt.open):
                    self._buf = head[len(fmt.open):]
                    self._state = "reasoning_start"
                    self.seen_reasoning = True
                elif not head or fmt.open.startswith(head):
                    return  # still could be the opening marker
                else:
                    self._state = "answer"
            elif state == "reasoning_start":
                self._buf = self._buf.lstrip()
                if not self._buf:
                    return
                self._state = "reasoning"
            elif state == "reasoning":
                at = self._buf.find(fmt.close)
                if at >= 0:
                    out.append(("reasoning", self._buf[:at].rstrip()))
                    self._buf = self._buf[at + len(fmt.close):]
                    self._state = "answer_start"
                    continue
                keep = _held_prefix(self._buf, fmt.close)
                cut = len(self._buf) - keep
                # trailing whitespace waits too: the closing marker drops it
                cut = len(self._buf[:cut].rstrip())
                out.append(("reasoning", self._buf[:cut]))
                self._buf = self._buf[cut:]
                return
            elif state == "answer_start":
                self._buf = self._buf.lstrip()
                if not self._buf:
                    return
                self._state = "answer"
            else:
                out.append(("answer", self._buf))
                self._buf = ""

    # --- harmony (gpt-oss) ---------------------------------------------------------------

    def _harmony(self, out: list[Piece]) -> None:
        while self._buf:
            if self._state == "header":
                at = self._buf.find("<|message|>")
                if at >= 0:
                    self._header += self._buf[:at]
                    self._buf = self._buf[at + len("<|message|>"):]
                    self._state = "content"
                    if "analysis" in self._header:
                        self.seen_reasoning = True
                    continue
                if not self._header and not _could_be_markup(self._buf):
                    self._state, self._header = "content", "final"  # no header: all answer
                    continue
                keep = _held_prefix(self._buf, "<|message|>")
                cut = len(self._buf) - keep
                self._header += self._buf[:cut]
                self._buf = self._buf[cut:]
                return
            part: Part = "reasoning" if "analysis" in self._header else "answer"
            at = self._buf.find("<|end|>")
            if at >= 0:
                out.append((part, self._buf[:at]))
                self._buf = self._buf[at + len("<|end|>"):]
                self._state, self._header = "header", ""
                continue
            keep = _held_prefix(self._buf, "<|end|>")
            cut = len(self._buf) - keep
            out.append((part, self._buf[:cut]))
            self._buf = self._buf[cut:]
            return

    @property
    def state(self) -> str:
        return self._state


def split_whole(text: str, fmt: ReasoningFormat = THINK, *, started_inside: bool = False
                ) -> tuple[str, str]:
    """(reasoning, answer) of a complete reply."""
    splitter = ReasoningSplitter(fmt, started_inside=started_inside)
    parts = splitter.feed(text) + splitter.close()
    reasoning = "".join(t for p, t in parts if p == "reasoning")
    answer = "".join(t for p, t in parts if p == "answer")
    return reasoning, answer
