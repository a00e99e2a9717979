"""Control characters never reach a terminal raw (issue 22.10): a template body holding an
OSC 52 clipboard write or a clear-screen, a model's answer, a file name."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVIL = "Hello\x1b]52;c;aGFja2Vk\x07 and \x1b[2J{{ who }}\x9b31m"


def test_printable() -> None:
    from tui.display import printable

    assert printable(EVIL) == "Hello\\x1b]52;c;aGFja2Vk\\x07 and \\x1b[2J{{ who }}\\x9b31m"
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"
    assert printable("R\udce9sum\udce9") == "R\\udce9sum\\udce9"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_for_terminal_escapes_only_a_terminal() -> None:
    from tui.display import for_terminal

    tty = FakeTerminal()
    for_terminal(tty).write("answer \x1b[2J done")
    assert tty.getvalue() == "answer \\x1b[2J done"
    pipe = io.StringIO()
    for_terminal(pipe).write("answer \x1b[2J done")  # a pipe or a file: as it is
    assert pipe.getvalue() == "answer \x1b[2J done"


def _in_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """Run ``lmdesk`` with its stdout on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdout=follower,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    proc.wait(30)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out


def test_templates_show_and_render_in_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "LMDESK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    file = tmp_path / "evil.json"
    file.write_text(json.dumps({"name": "evil", "body": EVIL,
                                "variables": [{"name": "who", "default": "you"}]}))
    imported = subprocess.run([sys.executable, "-m", "tui.cli", "templates", "import",
                               str(file)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert imported.returncode == 0, imported.stderr
    for action in ("show", "render"):
        shown = _in_a_terminal(["templates", action, "evil"], env)
        assert b"\x1b" not in shown and b"\x07" not in shown and b"\xc2\x9b" not in shown
        assert b"\\x1b]52;c;aGFja2Vk\\x07" in shown and b"\\x1b[2J" in shown
    piped = subprocess.run([sys.executable, "-m", "tui.cli", "templates", "render", "evil"],
                           capture_output=True, env=env, cwd=ROOT)
    assert b"\x1b[2J" in piped.stdout  # into a pipe, the text as it is
