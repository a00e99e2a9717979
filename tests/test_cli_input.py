"""What `lmdesk ask` reads and prints (issues 22.9, 22.10): bytes that are not UTF-8 are
replaced with one note, never sent on as surrogates or echoed back; control characters in
the answer are not acted on by the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ask(*args: bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable.encode(), b"-m", b"tui.cli", b"ask", *args],
                          input=stdin, capture_output=True, timeout=180, env=env, cwd=ROOT)


@pytest.mark.parametrize("where", ["stdin", "argument"])
def test_a_prompt_that_is_not_utf8(where: str) -> None:
    prompt = b"R\xe9sum\xe9 of a lighthouse keeper"
    if where == "stdin":
        result = _ask(b"--max-tokens", b"4", stdin=prompt + b"\n")
    else:
        result = _ask(b"--max-tokens", b"4", prompt)
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, err
    assert "internal error" not in err and "UnicodeEncodeError" not in err
    assert "lighthouse" not in err  # the prompt is not echoed
    assert err.count("not valid UTF-8") == 1 and len(err) < 300, err
    assert result.stdout.strip()
