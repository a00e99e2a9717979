"""The core (everything outside tui/app) imports without Textual, and never imports llama_cpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tui

CORE = ["engine", "models", "store", "monitor", "prompting", "serve", "kb", "doctor"]


def _core_modules() -> list[str]:
    root = Path(tui.__file__).parent
    names = ["tui.cli", "tui.config"]
    for package in CORE:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root.parent).with_suffix("")
            names.append(".".join(rel.parts).removesuffix(".__init__"))
    return names


def test_core_imports_without_textual_or_llama_cpp() -> None:
    modules = [m for m in _core_modules() if not m.endswith(".worker") and "bench" not in m]
    assert "tui.engine.local" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp'))\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core modules pulled in: {result.stdout}"


def test_no_core_source_mentions_textual() -> None:
    root = Path(tui.__file__).parent
    offenders = [
        str(path)
        for package in CORE
        for path in (root / package).rglob("*.py")
        if "import textual" in path.read_text() or "from textual" in path.read_text()
    ]
    assert offenders == []
