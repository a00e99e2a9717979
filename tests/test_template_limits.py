"""Template files and bodies within bounds (issues 22.13, 22.15): a file nested 100,000 deep,
a huge file and a huge body are each refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.prompting.templates import MAX_BODY_CHARS, Template, TemplateError

ROOT = Path(__file__).resolve().parents[1]


def _templates(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMDESK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tui.cli", "templates", *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_file_nested_100000_deep_is_one_line(tmp_path: Path, suffix: str) -> None:
    deep = tmp_path / f"deep{suffix}"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = _templates(tmp_path, "import", str(deep))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nested too deeply" in lines[0], result.stderr


def test_a_huge_body_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="a template may have up to 100,000"):
        Template("huge", "x" * (MAX_BODY_CHARS + 1)).validate()
    Template("fine", "x" * MAX_BODY_CHARS).validate()
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"name": "big", "body": "x" * 50 * 2**20}))
    result = _templates(tmp_path, "import", str(big))
    assert result.returncode == 1 and "too large for a template file" in result.stderr
    assert not (tmp_path / "data" / "index.json").exists() or (
        (tmp_path / "data" / "index.json").stat().st_size < 2**20)
    mid = tmp_path / "mid.json"
    mid.write_text(json.dumps({"name": "mid", "body": "x" * (MAX_BODY_CHARS + 5)}))
    result = _templates(tmp_path, "import", str(mid))
    assert result.returncode == 1 and "up to 100,000" in result.stderr
