"""The core (everything outside tui/app) imports without Textual, and never imports llama_cpp."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tui

CORE = ["engine", "models", "store", "monitor", "prompting", "session", "tools", "rpc", "serve",
        "kb", "doctor", "tune"]
ROOT = Path(__file__).resolve().parents[1]


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


def _lint_imports(root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--config", str(config), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env=env)


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line"), [
    ("store/errors.py", "import tui.app.app\n"),
    ("session/turn.py", "import textual.widget\n"),
    ("app/widgets/sidebar.py", "from tui.app.screens import chat\n"),
    ("engine/errors.py", "import tui.models.registry\n"),
])
def test_the_import_contracts_fail_on_a_violation(tmp_path: Path, module: str,
                                                  line: str) -> None:
    """A copy of the package with one forbidden import added breaks a contract."""
    shutil.copytree(ROOT / "tui", tmp_path / "tui",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "tui" / module
    target.write_text(line + target.read_text())
    result = _lint_imports(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout


def test_tune_imports_no_training_package_until_it_trains() -> None:
    """The tune extra is optional and heavy: importing lmdesk's tune modules (as `lmdesk tune`
    and the app do) loads none of it; only the training process imports it."""
    root = Path(tui.__file__).parent
    modules = [".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in sorted((root / "tune").rglob("*.py"))]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('torch', 'transformers', 'peft', 'gguf', 'llama_cpp', 'numpy')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "tui.tune.trainer" in modules
    assert result.stdout.strip() == ""
