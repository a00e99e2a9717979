"""Turn one file into text units: Markdown, plain text, source code, HTML and PDF.

Every extractor returns ``Unit``s: a piece of text with the lines (or, for PDF, the page) it
came from, the heading it sits under, and whether it starts a new section (a heading, a
top-level function). ``tui.kb.chunking`` packs units into chunks. Failures are raised as
``SkipFile`` with a one-line reason; the caller reports it and carries on.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tui.i18n import _

MARKDOWN_EXT = frozenset({".md", ".markdown", ".mdx", ".rst", ".adoc", ".org"})
HTML_EXT = frozenset({".html", ".htm", ".xhtml"})
PDF_EXT = frozenset({".pdf"})
CODE_EXT = frozenset({
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".c", ".h", ".cc", ".cpp",
    ".hpp", ".java", ".kt", ".swift", ".rb", ".php", ".cs", ".scala", ".lua", ".sh", ".bash",
    ".zsh", ".pl", ".r", ".jl", ".sql", ".m", ".ex", ".exs", ".hs", ".ml", ".zig", ".dart",
})
BINARY_EXT = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".zip", ".gz", ".tgz", ".bz2",
    ".xz", ".7z", ".tar", ".whl", ".so", ".dll", ".dylib", ".exe", ".bin", ".o", ".a", ".pyc",
    ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".mp3", ".mp4", ".wav", ".ogg", ".mov",
    ".avi", ".woff", ".woff2", ".ttf", ".otf", ".db", ".sqlite", ".jar", ".class", ".iso",
})
SNIFF_BYTES = 8192
MAX_BAD_CHAR_RATIO = 0.02


class SkipFile(Exception):
    """This file is not indexed; the message says why in a few words."""


@dataclass(frozen=True)
class Unit:
    text: str
    start: int
    """First line (1-based), or page number for PDF."""
    end: int
    heading: str = ""
    boundary: bool = False
    """Starts a new section: the chunker does not pack it with what came before."""


def kind_of(path: Path) -> str:
    """"markdown", "html", "pdf", "code", "binary" or "text" (by extension)."""
    ext = path.suffix.lower()
    if ext in MARKDOWN_EXT:
        return "markdown"
    if ext in HTML_EXT:
        return "html"
    if ext in PDF_EXT:
        return "pdf"
    if ext in CODE_EXT:
        return "code"
    if ext in BINARY_EXT:
        return "binary"
    return "text"


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with a BOM; binary or mostly
    undecodable bytes raise ``SkipFile``."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise SkipFile(_("undecodable UTF-16 text")) from None
    if b"\x00" in data[:SNIFF_BYTES]:
        raise SkipFile(_("binary file"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad > max(8, len(text) * MAX_BAD_CHAR_RATIO):
            raise SkipFile(_("undecodable text (not UTF-8)")) from None
        return text


def extract(path: Path, data: bytes) -> tuple[str, list[Unit]]:
    """The units of one file, and its kind. ``data`` is the file's bytes."""
    kind = kind_of(path)
    if kind == "binary":
        raise SkipFile(_("binary file"))
    if kind == "pdf":
        return kind, pdf_units(data)
    text = decode(data)
    if kind == "markdown":
        return kind, markdown_units(text)
    if kind == "html":
        return kind, html_units(text)
    if kind == "code":
        return kind, code_units(text)
    return kind, text_units(text)


# --- plain text and Markdown -----------------------------------------------------------------


def _paragraphs(lines: list[str], first_line: int, heading: str) -> list[Unit]:
    """Blank-line separated paragraphs of ``lines`` (line numbers from ``first_line``)."""
    units: list[Unit] = []
    start: int | None = None
    for i, line in enumerate([*lines, ""]):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            body = "\n".join(lines[start:i]).strip("\n")
            units.append(Unit(body, first_line + start, first_line + i - 1, heading))
            start = None
    return units


def text_units(text: str) -> list[Unit]:
    return _paragraphs(text.splitlines(), 1, "")


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_units(text: str) -> list[Unit]:
    """Sections under headings (ATX ``#`` and reST/setext underlines); fenced code kept whole."""
    lines = text.splitlines()
    units: list[Unit] = []
    stack: list[tuple[int, str]] = []
    heading = ""
    block: list[str] = []
    block_start = 1
    in_fence = False

    def flush(end: int) -> None:
        nonlocal block, block_start
        if block:
            units.extend(_paragraphs(block, block_start, heading))
        block = []
        block_start = end + 1

    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        if _FENCE.match(line):
            if not in_fence:
                flush(i)
                block_start = lineno
            block.append(line)
            in_fence = not in_fence
            if not in_fence:  # a closed fence is one unit
                units.append(Unit("\n".join(block), block_start, lineno, heading))
                block = []
                block_start = lineno + 1
            i += 1
            continue
        if in_fence:
            block.append(line)
            i += 1
            continue
        title: str | None = None
        level = 0
        span = 1
        if m := _MD_HEADING.match(line):
            title, level = m.group(2), len(m.group(1))
        elif (i + 1 < len(lines) and line.strip() and _RST_UNDERLINE.match(lines[i + 1])
              and len(lines[i + 1].strip()) >= len(line.strip()) - 1):
            title, level, span = line.strip(), 2 if lines[i + 1][0] in "-~^" else 1, 2
        if title is not None:
            flush(i)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            heading = " > ".join(t for _, t in stack)
            units.append(Unit(title, lineno, lineno + span - 1, heading, boundary=True))
            i += span
            block_start = i + 1
            continue
        block.append(line)
        i += 1
    if in_fence and block:
        units.append(Unit("\n".join(block), block_start, len(lines), heading))
    else:
        flush(len(lines))
    return units


# --- source code -----------------------------------------------------------------------------

_DEF = re.compile(
    r"^(\s{0,4})(?:export\s+|pub(?:\(\w+\))?\s+|public\s+|private\s+|static\s+|async\s+)*"
    r"(def|class|function|func|fn|impl|struct|enum|trait|interface|module|sub)\b"
)


def code_units(text: str) -> list[Unit]:
    """Blocks that start at each top-level (or one-level-indented) definition; the comments
    and decorators just above a definition go with it."""
    lines = text.splitlines()
    starts = [0]
    for i, line in enumerate(lines):
        if i and _DEF.match(line):
            j = i
            while j > 0 and lines[j - 1].lstrip().startswith(("@", "#", "//", "/*", "*", "///")):
                j -= 1
            if j > starts[-1]:
                starts.append(j)
    starts.append(len(lines))
    units: list[Unit] = []
    for a, b in itertools.pairwise(starts):
        body = "\n".join(lines[a:b]).strip("\n")
        if not body.strip():
            continue
        head = next((ln.strip() for ln in lines[a:b] if _DEF.match(ln)), "")
        units.append(Unit(body, a + 1, b, head[:120], boundary=bool(head)))
    return units


# --- HTML ------------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "li", "ul", "ol", "table", "tr", "td", "th", "pre",
    "blockquote", "br", "dd", "dt", "header", "footer", "main", "nav", "aside", "figure",
    "h1", "h2", "h3", "h4", "h5", "h6", "title", "body", "hr",
})
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[Unit] = []
        self.parts: list[str] = []
        self.start = 1
        self.skip = 0
        self.stack: list[tuple[int, str]] = []
        self.in_heading = 0
        self.pre = 0

    def _flush(self, end: int) -> None:
        text = "".join(self.parts)
        text = text.strip("\n") if self.pre else re.sub(r"\s+", " ", text).strip()
        self.parts = []
        if text:
            heading = " > ".join(t for _, t in self.stack)
            if self.in_heading:
                level = self.in_heading
                while self.stack and self.stack[-1][0] >= level:
                    self.stack.pop()
                self.stack.append((level, text))
                heading = " > ".join(t for _, t in self.stack)
                self.units.append(Unit(text, self.start, end, heading, boundary=True))
            else:
                self.units.append(Unit(text, self.start, max(end, self.start), heading))
        self.start = end

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self._flush(self.getpos()[0])
            if tag[0] == "h" and tag[1:].isdigit():
                self.in_heading = int(tag[1:])
            if tag == "pre":
                self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self._flush(self.getpos()[0])
            if tag[0] == "h" and tag[1:].isdigit():
                self.in_heading = 0
            if tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            if not self.parts:
                self.start = self.getpos()[0]
            self.parts.append(data)


def html_units(text: str) -> list[Unit]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser._flush(text.count("\n") + 1)
    return parser.units


# --- PDF -------------------------------------------------------------------------------------


def pdf_units(data: bytes) -> list[Unit]:
    """One or more units per page; ``start``/``end`` are page numbers. A PDF with no text
    layer (scanned images) raises ``SkipFile``."""
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise SkipFile(_("encrypted PDF"))
        units: list[Unit] = []
        for n, page in enumerate(reader.pages, 1):
            text = page.extract_text() or ""
            for unit in _paragraphs(text.splitlines(), 1, ""):
                units.append(Unit(unit.text, n, n, f"page {n}"))
    except SkipFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SkipFile(_("unreadable PDF ({name})", name=type(exc).__name__)) from None
    if not units:
        raise SkipFile(_("PDF has no text layer (scanned?)"))
    return units
