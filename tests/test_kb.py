"""Knowledge bases: extraction, chunking, ingest, incremental re-index, retrieval, prompt, CLI."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tui.kb import KBError, KBLibrary, Progress, retrieve_for_prompt
from tui.kb.chunking import chunk_units, tokenize
from tui.kb.cli import add_kb_parser, cmd_kb
from tui.kb.extract import code_units, html_units, markdown_units, pdf_units
from tui.kb.index import rrf
from tui.kb.prompt import kb_messages

DOC_MD = """# Reactor manual

Intro paragraph about the plant.

## Cooling

The Zorblat reactor is cooled by liquid gallium kept at 42 degrees.

## Safety

Operators wear blue helmets on Tuesdays.
"""

CODE_PY = '''"""A module."""

import os


def alpha(x):
    """Return x doubled."""
    return x * 2


class Beta:
    def method(self):
        return "beta"


@decorator
def gamma():
    return os.sep
'''

HTML = """<html><head><title>T</title><style>p {color: red}</style></head>
<body>
<h1>Kitchen</h1>
<p>The kettle is in the <b>left</b> cupboard.</p>
<script>var x = "hidden script";</script>
<h2>Garden</h2>
<p>Rakes hang on the north wall.</p>
</body></html>
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def text_pdf(text: str) -> bytes:
    """A one-page PDF with a real text layer, written by hand."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write(root / "manual.md", DOC_MD)
    write(root / "src" / "mod.py", CODE_PY)
    write(root / "site" / "index.html", HTML)
    write(root / "notes.txt", "Shopping list.\n\nBuy eggs and flour for the pancake party.\n")
    (root / "docs").mkdir()
    (root / "docs" / "paper.pdf").write_bytes(text_pdf("Photosynthesis needs chlorophyll"))
    write(root / ".hidden" / "secret.md", "hidden folder text")
    return root


@pytest.fixture
def lib(tmp_path: Path) -> KBLibrary:
    return KBLibrary(tmp_path / "data")


# --- extraction and chunking ------------------------------------------------------------------


def test_markdown_sections_and_lines() -> None:
    units = markdown_units(DOC_MD)
    cooling = next(u for u in units if "gallium" in u.text)
    assert cooling.heading == "Reactor manual > Cooling"
    assert cooling.start == cooling.end == 7
    assert [u.text for u in units if u.boundary] == ["Reactor manual", "Cooling", "Safety"]


def test_markdown_fence_and_rst_heading() -> None:
    text = "Title\n=====\n\n```\ncode\n\nmore code\n```\n\nafter\n"
    units = markdown_units(text)
    assert units[0].boundary and units[0].text == "Title"
    assert units[1].text == "```\ncode\n\nmore code\n```"
    assert (units[1].start, units[1].end) == (4, 8)


def test_code_split_on_definitions() -> None:
    units = code_units(CODE_PY)
    heads = [u.heading for u in units]
    assert "def alpha(x):" in heads and "class Beta:" in heads
    gamma = next(u for u in units if u.heading == "def gamma():")
    assert gamma.text.startswith("@decorator")  # the decorator goes with its function
    assert gamma.start == CODE_PY.splitlines().index("@decorator") + 1


def test_html_text_headings_no_script() -> None:
    units = html_units(HTML)
    text = " ".join(u.text for u in units)
    assert "kettle is in the left cupboard" in text
    assert "hidden script" not in text and "color" not in text
    rakes = next(u for u in units if "Rakes" in u.text)
    assert rakes.heading == "Kitchen > Garden" and rakes.start == 7


def test_pdf_text_layer() -> None:
    units = pdf_units(text_pdf("Photosynthesis needs chlorophyll"))
    assert units[0].start == 1 and "chlorophyll" in units[0].text


def test_chunking_overlap_and_size() -> None:
    paras = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(30))
    chunks = chunk_units("x.txt", markdown_units(paras), max_chars=600, overlap_chars=250)
    assert len(chunks) > 5
    assert all(len(c.text) <= 600 + 260 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.start <= a.end  # the last paragraph is repeated at the start of the next
    giant = chunk_units("y.txt", markdown_units("z" * 5000), max_chars=1000)
    assert len(giant) == 5


def test_tokenize_splits_identifiers() -> None:
    toks = tokenize("run_kb_bench parses HTMLFiles and the cats")
    assert {"run_kb_bench", "kb", "bench", "html", "file", "cat"} <= set(toks)
    assert "the" not in toks and "and" not in toks


def test_rrf_prefers_agreement() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]])
    assert fused[0][0] == 1 and {d for d, _ in fused} == {1, 2, 3, 4}


# --- ingest, search, incremental --------------------------------------------------------------


def test_ingest_and_search(lib: KBLibrary, corpus: Path) -> None:
    kb = lib.create("home", [corpus])
    seen: list[Progress] = []
    report = kb.reindex(progress=seen.append)
    assert report.files_total == 5 and report.files_new == 5 and not report.problems
    assert seen and seen[-1].files_done == seen[-1].files_total == 5
    assert seen[-1].chunks == report.chunks_total
    hits = kb.search("what cools the Zorblat reactor", 3)
    assert hits[0].chunk.path == str(corpus / "manual.md")
    assert hits[0].chunk.start <= 7 <= hits[0].chunk.end and "gallium" in hits[0].chunk.text
    assert kb.search("kettle cupboard")[0].chunk.path.endswith("index.html")
    pdf = kb.search("chlorophyll")[0].chunk
    assert pdf.page and pdf.location == "p. 1"
    assert kb.search("alpha doubled")[0].chunk.heading == "def alpha(x):"
    assert kb.search("secret hidden folder") == []  # hidden folders are not indexed
    assert kb.search("zzzunknownword") == []
    # reopened from disk, the same answers
    again = lib.open("home")
    assert again.search("gallium")[0].chunk.path == str(corpus / "manual.md")
    assert again.info().files == 5 and again.info().chunks == report.chunks_total
    assert (kb.dir / "index" / "bm25").is_dir() and (kb.dir / "kb.json").is_file()


def test_incremental_reindex(lib: KBLibrary, corpus: Path, monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    kb = lib.create("home", [corpus])
    first = kb.reindex()
    import tui.kb.ingest as ingest

    opened: list[str] = []
    real = ingest.process_file

    def spy(path: Path, *a: object, **k: object) -> object:
        opened.append(path.name)
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "process_file", spy)
    same = kb.reindex()
    assert opened == [] and same.files_unchanged == 5 and same.files_read == 0
    assert same.chunks_total == first.chunks_total

    time.sleep(0.01)
    write(corpus / "notes.txt", "Shopping list.\n\nBuy quinoa for the dinner.\n")
    (corpus / "src" / "mod.py").unlink()
    write(corpus / "new.md", "# New\n\nThe password hint is aardvark.\n")
    os.utime(corpus / "manual.md")  # new mtime, same bytes: read but not re-chunked
    r = kb.reindex()
    assert sorted(opened) == ["manual.md", "new.md", "notes.txt"]
    assert (r.files_changed, r.files_new, r.files_deleted) == (1, 1, 1)
    assert r.files_unchanged == 3 and r.files_read == 3
    assert kb.search("quinoa")[0].chunk.path.endswith("notes.txt")
    assert kb.search("pancake eggs flour") == []
    assert kb.search("alpha doubled") == []  # the deleted file's chunks are gone
    assert kb.search("aardvark")[0].chunk.path.endswith("new.md")
    assert kb.search("gallium")[0].chunk.path.endswith("manual.md")


def test_cancel_keeps_old_index(lib: KBLibrary, corpus: Path) -> None:
    kb = lib.create("home", [corpus])
    kb.reindex()
    for i in range(20):
        write(corpus / f"extra{i}.txt", f"extra file number {i} about walruses\n")
    stop = threading.Event()

    def progress(p: Progress) -> None:
        if p.files_done >= 3:
            stop.set()

    r = kb.reindex(progress=progress, cancel=stop)
    assert r.cancelled and r.files_deleted == 0
    assert kb.search("gallium")  # files not reached keep their old chunks
    done = kb.reindex()
    assert not done.cancelled and len(kb.search("walruses", 30)) == 20


def test_remove_paths_and_library(lib: KBLibrary, corpus: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "other" / "a.md", "Penguins live in Antarctica.\n")
    kb = lib.create("two", [corpus, other])
    kb.reindex()
    assert kb.search("penguins")
    kb.remove_paths([other])
    kb.reindex()
    assert kb.search("penguins") == [] and kb.search("gallium")
    with pytest.raises(KBError):
        lib.create("two")
    with pytest.raises(KBError):
        lib.create("../evil")
    with pytest.raises(KBError, match="no knowledge base"):
        lib.open("missing")
    assert lib.names() == ["two"]
    lib.remove("two")
    assert lib.names() == [] and not (lib.root / "two").exists()


# --- prompt ------------------------------------------------------------------------------------


def test_retrieve_for_prompt_budget_and_sources(lib: KBLibrary, corpus: Path,
                                                tmp_path: Path) -> None:
    kb = lib.create("home", [corpus])
    kb.reindex()
    kb2 = lib.create("garden", [write(tmp_path / "g" / "g.md", "Gallium melts in your hand.\n")])
    kb2.reindex()
    ctx = retrieve_for_prompt([kb, kb2], "gallium reactor", None, 400)
    assert ctx.sources[0].path == str(corpus / "manual.md")
    assert ctx.sources[0].start <= 7 <= ctx.sources[0].end and ctx.sources[0].n == 1
    assert {s.kb for s in ctx.sources} == {"home", "garden"}
    assert "[1]" in ctx.system_block and "cite" in ctx.system_block
    assert "gallium" in ctx.passages[0]
    assert ctx.sources_text().startswith(f"[1] {corpus / 'manual.md'}:1-11")
    assert ctx.tokens <= 400
    tiny = retrieve_for_prompt([kb], "gallium", None, 10)
    assert tiny.system_block == "" and tiny.sources == ()
    block, sources = kb_messages(lib.root.parent, ["home"], "Zorblat gallium", None)
    assert sources and "[1]" in block
    none = retrieve_for_prompt([kb], "nothing matches qqqq", None, 500)
    assert none.system_block == "" and none.notes


# --- CLI ----------------------------------------------------------------------------------------


def _run(argv: list[str], data: Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_kb_parser(sub)
    args = parser.parse_args(argv)
    from tui.config import Paths

    out, err = io.StringIO(), io.StringIO()
    rc = cmd_kb(args, None, Paths(data, data / "c", data / "k"), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_cli(tmp_path: Path, corpus: Path) -> None:
    data = tmp_path / "data"
    rc, out, _ = _run(["kb", "add", "docs", str(corpus)], data)
    assert rc == 0 and "5 files" in out
    rc, out, _ = _run(["kb", "list", "--json"], data)
    listed = json.loads(out)
    assert listed[0]["name"] == "docs" and listed[0]["files"] == 5
    rc, out, _ = _run(["kb", "search", "docs", "gallium", "--json"], data)
    assert json.loads(out)[0]["path"].endswith("manual.md")
    rc, out, _ = _run(["kb", "search", "docs", "gallium"], data)
    assert out.startswith("[1] ") and "manual.md:1-11" in out
    rc, out, err = _run(["kb", "search", "nope", "x"], data)
    assert rc == 1 and "no knowledge base" in err
    rc, out, _ = _run(["kb", "rm", "docs", "--json"], data)
    assert rc == 0 and json.loads(out) == {"removed": "docs"}
    rc, out, _ = _run(["kb", "list"], data)
    assert "no knowledge bases" in out
