"""A large file is indexed in segments (issue 22.15): its reading memory stays bounded
whatever its size, and its chunks still point at the right lines."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from tui.kb import KBLibrary
from tui.kb.ingest import process_file
from tui.kb.segments import SEGMENT_BYTES, SEGMENT_CHARS

WORDS = ("harbour", "lantern", "keeper", "gull", "tide", "rope", "cliff", "storm", "beacon")


def _write_big(path: Path, size: int) -> list[str]:
    """Paragraphs of ordinary words, each with one unique marker; returns the lines."""
    lines: list[str] = []
    n = 0
    total = 0
    while total < size:
        para = [" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) for _ in range(3)]
        para[1] += f" marker{n}x"
        lines.extend([*para, ""])
        total += sum(len(line) + 1 for line in para) + 1
        n += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_reading_memory_stays_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    _write_big(big, 16 * 2**20)
    tracemalloc.start()
    try:
        result = process_file(big, big.stat(), None, 100 * 2**20)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.chunks
    # what it needed beyond what it returns: a few segments, not the file several times
    # over (read whole: its bytes, their text and its lines, 46 MiB here)
    assert peak - retained < 12 * 2**20, (peak - retained) / 2**20
    assert big.stat().st_size > SEGMENT_BYTES and SEGMENT_CHARS < 12 * 2**20


def test_a_segmented_file_cites_the_right_lines(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = _write_big(docs / "log.txt", 9 * 2**20)
    kb = KBLibrary(tmp_path / "data").create("docs", [docs])
    report = kb.reindex()
    assert report.files_new == 1 and not report.problems
    paragraphs = sum(1 for line in lines if not line)
    for marker in ("marker3x", f"marker{paragraphs // 2}x", f"marker{paragraphs - 1}x"):
        hit = kb.search(marker, 1)[0]
        where = next(i for i, line in enumerate(lines, 1) if line.endswith(" " + marker))
        assert hit.chunk.start <= where <= hit.chunk.end, (marker, where, hit.chunk.start)
        assert marker in hit.chunk.text
    # touched but the same bytes: not chunked again
    (docs / "log.txt").touch()
    again = kb.reindex()
    assert again.files_unchanged == 1 and again.chunks_new == 0
