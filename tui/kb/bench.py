"""``run_kb_bench``: ingest speed, query latency and recall@5 on a real corpus.

The corpus is the Python sources and docs of packages installed beside lmdesk (textual,
rich, pygments, numpy...): well over 10,000 chunks with no download. Recall is measured on
questions whose answers sit in known files of those packages.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.kb.kb import KBLibrary

PACKAGES = ("textual", "rich", "pygments", "numpy", "pydantic", "_pytest", "tinydb", "jinja2",
            "markdown_it", "huggingface_hub", "pypdf", "bm25s", "yaml", "psutil",
            "platformdirs")
MIN_CHUNKS = 10_000
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("lexer for Python source code tokens", "pygments/lexers/python.py"),
    ("TinyDB query: test whether a field matches a regular expression", "tinydb/queries.py"),
    ("sandboxed template environment that blocks unsafe attribute access",
     "jinja2/sandbox.py"),
    ("extract the text of a PDF page", "pypdf/_page.py"),
    ("progress bar with transfer speed and time remaining columns", "rich/progress.py"),
    ("add a row to a data table widget", "textual/widgets/_data_table.py"),
    ("parse emphasis delimiters asterisk underscore in inline markdown",
     "markdown_it/rules_inline/emphasis.py"),
    ("user cache directory on macOS Library Caches", "platformdirs/macos.py"),
    ("YAML constructor for safe loading of python objects", "yaml/constructor.py"),
    ("least-squares solution to a linear matrix equation", "numpy/linalg/_linalg.py"),
    ("tokenize a corpus with stopwords and a stemmer into ids", "bm25s/tokenization.py"),
    ("download a file from the hub into the local cache", "huggingface_hub/file_download.py"),
    ("field validator decorator with mode before after", "pydantic/functional_validators.py"),
    ("monkeypatch setattr setenv fixture undo", "_pytest/monkeypatch.py"),
    ("syntax highlighted source code with line numbers", "rich/syntax.py"),
    ("key bindings: bind a key to an action with a description", "textual/binding.py"),
)


def _package_dirs() -> list[Path]:
    dirs = []
    for name in PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs.append(Path(next(iter(spec.submodule_search_locations))))
    return dirs


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_kb_bench(out: Callable[[str], Any] = print, *, queries: int = 200,
                 data_dir: Path | None = None) -> dict[str, Any]:
    """Ingest the corpus, re-index after touching a few files, time ``queries`` searches and
    measure recall@5. Returns the figures."""
    tmp = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="lmdesk-kb-bench-"))
    try:
        roots = _package_dirs()
        lib = KBLibrary(tmp)
        kb = lib.create("bench", roots)
        out(f"corpus: {len(roots)} installed packages ({', '.join(p.name for p in roots)})")
        report = kb.reindex()
        n_chunks = report.chunks_total
        rate = n_chunks / report.seconds if report.seconds else 0.0
        out(f"ingest: {report.files_total} files, {n_chunks} chunks in {report.seconds:.1f} s"
            f" = {rate:.0f} chunks/s ({report.files_skipped} skipped)")
        if n_chunks < MIN_CHUNKS:
            out(f"warning: only {n_chunks} chunks (< {MIN_CHUNKS}): fewer packages installed")

        # incremental: copy the corpus' smallest package, edit 5 files, delete 1
        work = tmp / "edit"
        small = min(roots, key=lambda p: sum(1 for _ in p.rglob("*.py")))
        shutil.copytree(small, work / small.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        kb.add_paths([work])
        kb.reindex()
        edited = sorted((work / small.name).rglob("*.py"))
        for f in edited[:5]:
            with open(f, "a", encoding="utf-8") as fh:
                fh.write("\n# edited by the benchmark: zebra quokka\n")
        if len(edited) > 5:
            edited[5].unlink()
        inc = kb.reindex()
        out(f"re-index after editing 5 files and deleting 1: {inc.seconds:.2f} s, "
            f"{inc.files_read} files read, {inc.files_changed} changed, "
            f"{inc.files_deleted} deleted, {inc.files_unchanged} unchanged untouched "
            f"({inc.seconds / report.seconds * 100:.0f}% of a full ingest)")
        quokka = kb.search("zebra quokka", 5)
        assert quokka and str(work) in quokka[0].chunk.path

        idx = kb.index
        step = max(1, len(idx.chunks) // queries)
        pool = [c.heading or " ".join(c.text.split()[:6]) for c in idx.chunks[::step]]
        qs = [q for q, _ in QUESTIONS] + pool
        qs = (qs * (queries // max(1, len(qs)) + 1))[:queries]
        kb.search("warm up", 5)
        times = []
        for q in qs:
            t0 = time.perf_counter()
            kb.search(q, 5)
            times.append((time.perf_counter() - t0) * 1000)
        p50, p99 = _pct(times, 50), _pct(times, 99)
        out(f"query latency over {len(times)} queries: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"mean {statistics.fmean(times):.1f} ms")

        found = 0
        for q, want in QUESTIONS:
            hits = kb.search(q, 5)
            ok = any(h.chunk.path.replace(os.sep, "/").endswith(want) for h in hits)
            found += ok
            if not ok:
                got = hits[0].chunk.path if hits else "nothing"
                out(f"  miss: {q!r} -> {got}")
        recall = found / len(QUESTIONS)
        out(f"recall@5: {found}/{len(QUESTIONS)} = {recall:.2f}")
        return {"files": report.files_total, "chunks": n_chunks, "ingest_s": report.seconds,
                "chunks_per_s": rate, "reindex_s": inc.seconds,
                "reindex_files_read": inc.files_read, "p50_ms": p50, "p99_ms": p99,
                "recall_at_5": recall, "questions": len(QUESTIONS)}
    finally:
        if data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
