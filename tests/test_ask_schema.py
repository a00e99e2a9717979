"""`lmdesk ask --schema` refuses a schema it cannot use with one line, before loading a model.
(That the answer then parses and validates is in test_serve_structured.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read the schema"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
])
def test_a_bad_schema_file_is_one_line(tmp_path: Path, content: str | None, says: str) -> None:
    schema = tmp_path / "schema.json"
    if content is not None:
        schema.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "ask", "--schema", str(schema), "hello"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmdesk: error: ") and says in lines[0]
    assert "Traceback" not in result.stderr
