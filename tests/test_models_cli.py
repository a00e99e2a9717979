"""`lmdesk models`: list, info (--measure), pull, rm and catalogue, text and --json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_server import HubServer
from tui.config import Settings, resolve_paths
from tui.models.cli import add_models_parser, cmd_models

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"  # not in the catalogue: pull lists and picks
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"


def run(capsys: pytest.CaptureFixture[str], *argv: str,
        settings: Settings | None = None) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="lmdesk")
    add_models_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", *argv])
    code = cmd_models(args, settings or Settings(), resolve_paths())
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hub(smollm: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with HubServer() as server:
        server.add(REPO, FILE, smollm)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_list_text_and_json(
    smollm: Path, gemma: Path, tmp_path: Path, hf_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    os.link(smollm, folder / "copy.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    code, out, _ = run(capsys, "list", "--dir", str(folder))
    assert code == 0
    assert "smollm2-135m" in out and "gemma3-270m" in out and "copy" in out
    assert "broken" in out and "unreadable" in out
    code, out, _ = run(capsys, "list", "--json", settings=Settings(model_dirs=[str(folder)]))
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["copy"]["architecture"] == "llama" and rows["copy"]["source"] == "folder"
    assert rows["copy"]["fit"]["verdict"] in ("green", "amber", "red")
    assert rows["copy"]["verdict"] in ("green", "amber", "red")
    assert rows["copy"]["predicted_tok_s"] > 0 and rows["copy"]["predicted_prompt_tok_s"] > 0
    assert rows["copy"]["n_ctx"] == 8192  # SmolLM2's trained context fits with margin
    assert rows["broken"]["error"] and rows["broken"]["fit"] is None
    assert rows["broken"]["predicted_tok_s"] is None
    assert rows["gemma3-270m"]["has_chat_template"] is False
    assert rows["gemma3-270m"]["source"] == "packaged"


def test_info_and_measure(smollm: Path, hf_cache: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", "smollm2", "--json", "--n-ctx", "2048")
    data = json.loads(out)
    assert code == 0 and data["n_layers"] == 30 and data["fit"]["n_ctx"] == 2048
    assert data["predicted_tok_s"] > 0 and "measured_tok_s" not in data
    code, out, _ = run(capsys, "info", str(smollm), "--n-ctx", "2048", "--measure")
    assert code == 0
    assert "heads / kv heads   9 / 3" in out and "memory at n_ctx 2048" in out
    assert "measured worker RSS" in out and "estimate" in out
    assert "measured speed:" in out and "predicted/measured" in out
    code, out, _ = run(capsys, "info", "smollm2", "--json")
    data = json.loads(out)
    # the measuring run above was kept: the prediction now leans on it
    assert data["speed_basis"] == "1 measured run of this model"
    code, _, err = run(capsys, "info", "no-such-model")
    assert code == 1 and "no model named 'no-such-model'" in err
    assert err.startswith("lmdesk: error: ")


def test_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalogue", "--json")
    data = json.loads(out)["catalogue"]
    assert code == 0 and len(data) >= 40
    with_files = [e for e in data if e["files"]]
    assert all(e["verdict"] in ("green", "amber", "red") for e in with_files)
    assert all(e["predicted_tok_s"] > 0 for e in with_files if e["best_quantization"])
    qwen = next(e for e in data if e["id"] == "qwen3-8b")
    assert [q["quantization"] for q in qwen["quantizations"]][:2] == ["Q8_0", "Q6_K"]
    assert all(q["predicted_tok_s"] > 0 and q["line"] for q in qwen["quantizations"])
    code, out, _ = run(capsys, "catalogue")
    assert "qwen3-8b" in out and "gpt-oss-20b" in out and "no GGUF file listed" in out
    code, out, _ = run(capsys, "catalogue", "qwen3-8b")
    assert code == 0 and "bartowski/Qwen_Qwen3-8B-GGUF" in out and "best here:" in out
    assert "Qwen_Qwen3-8B-Q3_K_M.gguf" in out and "IQ4_XS" in out


def test_pull_list_rm(hub: HubServer, hf_cache: Path, smollm: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "pull", REPO, "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["filename"] == FILE and pulled["fit"]["verdict"] == "green"
    assert Path(pulled["path"]).read_bytes() == smollm.read_bytes()
    assert hf_cache in Path(pulled["path"]).parents
    code, out, _ = run(capsys, "list", "--json")
    names = {r["name"]: r for r in json.loads(out)["models"]}
    cached = names["SmolLM2-135M-Instruct-Q4_1"]
    assert cached["source"] == "hf-cache" and cached["repo_id"] == REPO
    code, out, _ = run(capsys, "rm", "SmolLM2-135M-Instruct-Q4_1", "--json")
    assert code == 0 and json.loads(out)["freed_bytes"] >= smollm.stat().st_size
    assert not any(p.is_file() and p.stat().st_size > 1 << 20 for p in hf_cache.rglob("*"))
    code, _, err = run(capsys, "rm", "smollm2-135m")
    assert code == 1 and "pip" in err  # a packaged model is not removed
    assert smollm.is_file()


def test_pull_offline_fails_clearly(hf_cache: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pull", "qwen2.5-0.5b-instruct")  # HF_HUB_OFFLINE=1 here
    assert code == 1 and "no network" in err


def test_wired_into_the_lmdesk_command(hf_cache: Path) -> None:
    from tui.cli import build_parser

    try:
        build_parser().parse_args(["models", "list"])
    except SystemExit:
        pytest.skip("`lmdesk models` is not wired into tui/cli.py yet")
    result = subprocess.run([sys.executable, "-m", "tui.cli", "models", "list", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any(m["name"] == "smollm2-135m" for m in json.loads(result.stdout)["models"])
