"""Knowledge-base ingest on hostile folders (issues 22.3, 22.11, 22.13, 22.15): links out of
the folder, names that are not UTF-8, bad --max-mb values, private index files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_kb_bad_input import problem
from tui.kb import KBLibrary

ROOT = Path(__file__).resolve().parents[1]
SECRET = "The vault code is 4417 and the ssh key is hunter2."


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "shadow.txt").write_text(SECRET + "\n")
    return secret


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.md").write_text("# Good\n\nThe lighthouse keeper is named Ingrid.\n")
    return docs


def test_links_out_of_the_folder_are_skipped(tmp_path: Path, outside: Path) -> None:
    docs = _docs(tmp_path)
    (docs / "shadow.txt").symlink_to(outside / "shadow.txt")  # ln -s /etc/shadow
    (docs / "sub" / "up").symlink_to("..", target_is_directory=True)  # ln -s .. sub/up
    (docs / "elsewhere").symlink_to(outside, target_is_directory=True)
    (docs / "inside.md").symlink_to(docs / "good.md")  # stays inside: fine
    kb = KBLibrary(tmp_path / "data").create("docs", [docs])
    report = kb.reindex()
    assert kb.search("vault code") == []
    assert "a link out of" in problem(report.problems, "shadow.txt")
    assert "a link out of" in problem(report.problems, "elsewhere")
    assert "--follow-links" in problem(report.problems, "shadow.txt")
    # sub/up points back into the folder: not outside it, and not read twice
    assert not any("up" in p and "link out" in p for p in report.problems)
    assert {Path(p).name for p in kb.index.files} == {"good.md", "inside.md"}
    kb.set_follow_links(True)
    followed = kb.reindex()
    assert kb.search("vault code")[0].chunk.path.endswith("shadow.txt")
    assert not any("link out" in p for p in followed.problems)


def test_kb_add_follow_links_from_the_command_line(tmp_path: Path, outside: Path) -> None:
    docs = _docs(tmp_path)
    (docs / "shadow.txt").symlink_to(outside / "shadow.txt")
    env = {**os.environ, "LMDESK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}

    def lmdesk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT)

    added = lmdesk("kb", "add", "docs", str(docs))
    assert added.returncode == 0, added.stderr
    assert "a link out of" in added.stderr
    assert "vault" not in lmdesk("kb", "search", "docs", "vault code").stdout
    again = lmdesk("kb", "reindex", "docs", "--follow-links")
    assert again.returncode == 0, again.stderr
    assert "vault" in lmdesk("kb", "search", "docs", "vault code").stdout
    assert "vault" in lmdesk("kb", "search", "docs", "vault code").stdout  # kept


def test_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    bad = os.fsencode(docs) + b"/R\xe9sum\xe9.txt"
    with open(bad, "wb") as f:
        f.write(b"A resume of the lighthouse keeper.\n")
    kb = KBLibrary(tmp_path / "data").create("docs", [docs])
    report = kb.reindex()  # used to raise UnicodeEncodeError, leaving the KB empty
    line = problem(report.problems, "not valid UTF-8")
    assert "R\\udce9sum\\udce9.txt" in line
    line.encode("utf-8")  # printable
    assert kb.search("lighthouse keeper")[0].chunk.path.endswith("good.md")
    from tui.kb.kb import KBError

    with pytest.raises(KBError, match="not valid UTF-8"):
        kb.add_paths([os.fsdecode(bad)])


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "lots"])
def test_bad_max_mb_is_one_line(tmp_path: Path, value: str) -> None:
    env = {**os.environ, "LMDESK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    docs = _docs(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "kb", "add", "docs", str(docs), "--max-mb", value],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"argument --max-mb: {value!r} is not" in result.stderr.splitlines()[-1]


def test_index_files_are_private(tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    data = tmp_path / "data"
    kb = KBLibrary(data).create("docs", [docs])
    kb.reindex()
    found = []
    for base, _dirs, files in os.walk(data / "kb"):
        found.append((base, stat.S_IMODE(os.stat(base).st_mode)))
        for name in files:
            path = os.path.join(base, name)
            found.append((path, stat.S_IMODE(os.stat(path).st_mode)))
    assert len(found) > 5
    wrong = [(p, oct(m)) for p, m in found if m != (0o700 if os.path.isdir(p) else 0o600)]
    assert wrong == []
