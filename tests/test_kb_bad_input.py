"""Bad input to a knowledge base: each file is skipped or reported in one line, ingest carries
on, and nothing already indexed is lost."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tui.kb import KBLibrary, KnowledgeBase, Progress
from tui.kb.extract import SkipFile, decode


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nThe lighthouse keeper is named Ingrid.\n")
    kb = KBLibrary(tmp_path / "data").create("docs", [root])
    first = kb.reindex()
    assert first.files_new == 1 and not first.problems
    return kb


def root_of(kb: KnowledgeBase) -> Path:
    return Path(kb.paths[0])


def still_indexed(kb: KnowledgeBase) -> None:
    hits = kb.search("lighthouse keeper")
    assert hits and hits[0].chunk.path.endswith("good.md")


def problem(report_problems: list[str], name: str) -> str:
    lines = [p for p in report_problems if name in p]
    assert len(lines) == 1, report_problems
    assert "\n" not in lines[0]
    return lines[0]


def test_binary_and_undecodable(kb: KnowledgeBase) -> None:
    root = root_of(kb)
    (root / "blob.dat").write_bytes(b"\x7fELF\x00\x01\x02" * 500)
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / "latin.txt").write_bytes(bytes(range(0x80, 0x100)) * 40)
    (root / "fine.txt").write_text("A readable file about otters.\n")
    r = kb.reindex()
    assert "binary" in problem(r.problems, "blob.dat")
    assert "binary" in problem(r.problems, "image.png")
    assert "undecodable" in problem(r.problems, "latin.txt")
    assert kb.search("otters") and r.files_new == 1
    still_indexed(kb)
    again = kb.reindex()  # skipped files are remembered, not read again
    assert again.files_read == 0 and again.files_skipped == 3


def test_decode_rules() -> None:
    assert decode("héllo".encode()) == "héllo"
    assert decode("\ufeffbom".encode()) == "bom"
    assert decode("hi".encode("utf-16")) == "hi"
    assert "\ufffd" in decode(b"mostly fine text " * 20 + b"with one bad byte \xff")
    with pytest.raises(SkipFile):
        decode(b"\x00\x01binary")


def test_unreadable_file_keeps_old_chunks(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    # tests run as root, where chmod 000 blocks nothing: fail the open itself
    root = root_of(kb)
    (root / "locked.txt").write_text("never read\n")
    (root / "good.md").write_text("# Good\n\nThe lighthouse keeper is named Ingrid. Edited.\n")

    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *a: int) -> int:
        if Path(path).name in ("locked.txt", "good.md"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", deny)
    r = kb.reindex()
    assert "Permission denied" in problem(r.problems, "locked.txt")
    assert "previous index kept" in problem(r.problems, "good.md")
    still_indexed(kb)
    monkeypatch.setattr(os, "open", real_open)
    r = kb.reindex()
    assert not r.problems and kb.search("never read")


def test_fifo_socket_and_dir_named_like_files(kb: KnowledgeBase, tmp_path: Path) -> None:
    root = root_of(kb)
    os.mkfifo(root / "pipe.md")
    sock_path = root / "sock.txt"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        (root / "folder.txt").mkdir()
        (root / "folder.txt" / "inner.md").write_text("Walruses nap on ice.\n")
        r = kb.reindex()  # would hang forever if the FIFO were opened
    finally:
        sock.close()
    assert "not a regular file" in problem(r.problems, "pipe.md")
    assert "not a regular file" in problem(r.problems, "sock.txt")
    assert kb.search("walruses")
    still_indexed(kb)


def test_huge_log_is_capped(kb: KnowledgeBase) -> None:
    big = root_of(kb) / "server.log"
    with open(big, "wb") as f:
        f.truncate(200 * 2**20)  # sparse: instant, no disk used
    r = kb.reindex()
    assert "too large (200 MiB > 20 MiB limit)" in problem(r.problems, "server.log")
    still_indexed(kb)
    small = kb.reindex(max_bytes=2**30)  # a raised limit: read, found to be binary zeros
    assert "binary" in problem(small.problems, "server.log")


def test_symlink_loops(kb: KnowledgeBase) -> None:
    root = root_of(kb)
    sub = root / "sub"
    sub.mkdir()
    (sub / "note.txt").write_text("Puffins nest on cliffs.\n")
    (sub / "back").symlink_to(root)  # a folder loop
    (root / "self.md").symlink_to(root / "self.md")  # a link to itself
    (root / "dangling.md").symlink_to(root / "nowhere.md")
    r = kb.reindex()
    assert "symlink loop" in problem(r.problems, "back")
    assert "self.md" in problem(r.problems, "self.md")
    assert "broken symlink" in problem(r.problems, "dangling.md")
    assert len(kb.search("puffins")) == 1
    still_indexed(kb)


def test_folder_vanishes_mid_ingest(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    root = root_of(kb)
    gone = root / "zz_gone"
    gone.mkdir()
    for i in range(3):
        (gone / f"f{i}.txt").write_text(f"file {i} about narwhals\n")
    (root / "kept.txt").write_text("Kept file about seals.\n")

    def vanish(p: Progress) -> None:
        if p.files_done == 1 and gone.exists():
            for f in gone.iterdir():
                f.unlink()
            gone.rmdir()

    r = kb.reindex(progress=vanish)
    assert sum("vanished during ingest" in p for p in r.problems) >= 2
    assert kb.search("seals")
    still_indexed(kb)

    # a folder that vanishes between the listing of its parent and its own listing
    (root / "later").mkdir()

    real_scandir = os.scandir

    def flaky(path: str | os.PathLike[str]) -> object:
        if Path(path).name == "later":
            raise FileNotFoundError(2, "No such file or directory")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", flaky)
    r = kb.reindex()
    assert "folder vanished" in problem(r.problems, "later")
    still_indexed(kb)


def test_root_missing_keeps_index(kb: KnowledgeBase, tmp_path: Path) -> None:
    root = root_of(kb)
    moved = tmp_path / "unplugged"
    root.rename(moved)
    r = kb.reindex()
    assert "not found" in problem(r.problems, str(root))
    still_indexed(kb)


def test_pdf_without_text_and_broken_pdf(kb: KnowledgeBase) -> None:
    from pypdf import PdfWriter

    root = root_of(kb)
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(root / "scan.pdf", "wb") as f:
        writer.write(f)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    r = kb.reindex()
    assert "no text layer" in problem(r.problems, "scan.pdf")
    assert "PDF" in problem(r.problems, "broken.pdf")
    still_indexed(kb)


def test_extractor_crash_is_contained(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    import tui.kb.ingest as ingest

    def boom(path: Path, data: bytes) -> object:
        raise RecursionError("parser blew up")

    (root_of(kb) / "weird.md").write_text("# x\n")
    monkeypatch.setattr(ingest, "extract", boom)
    r = kb.reindex()
    assert "RecursionError" in problem(r.problems, "weird.md")
    still_indexed(kb)
