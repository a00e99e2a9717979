"""The catalogue data file: its schema, unique ids, today's families and the article's names,
and a user's copy in the config folder that replaces the packaged one without a release."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tui.config import resolve_paths
from tui.models.catalogue import (
    SCHEMA_VERSION,
    CatalogueError,
    load_catalogue,
    parse_catalogue,
    read_catalogue,
    validate_catalogue,
)

FAMILIES = {
    "Qwen3": {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b",
              "qwen3-coder-30b-a3b"},
    "Gemma 3": {"gemma-3-270m-it", "gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it",
                "gemma-3-27b-it"},
    "Llama 3.x": {"llama-3.1-8b-instruct", "llama-3.2-1b-instruct", "llama-3.2-3b-instruct",
                  "llama-3.3-70b-instruct"},
    "others of today": {"phi-4-mini-instruct", "mistral-small-3.2-24b-instruct", "gpt-oss-20b",
                        "deepseek-r1-distill-qwen-7b", "smollm3-3b", "granite-3.3-8b-instruct"},
    "the article's": {"mistral-7b-instruct-v0.2", "mixtral-8x7b-instruct", "llama-2-7b-chat",
                      "falcon-7b-instruct", "phi-2", "tinyllama-1.1b-chat", "gpt-j-6b",
                      "gpt-neox-20b"},
}


def packaged() -> dict[str, Any]:
    text = resources.files("tui.models").joinpath("catalogue.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_the_packaged_catalogue_is_valid_with_unique_ids() -> None:
    data = packaged()
    assert data["version"] == SCHEMA_VERSION
    assert validate_catalogue(data) == []
    ids = [m["id"] for m in data["models"]]
    assert len(ids) == len(set(ids))
    names = {m["id"] for m in data["models"]}
    for family, wanted in FAMILIES.items():
        assert wanted <= names, f"{family}: missing {sorted(wanted - names)}"


def test_every_entry_says_what_was_checked_and_what_it_can_do() -> None:
    entries = load_catalogue()
    checked = [e for e in entries if e.verified]
    assert len(checked) >= 20
    for e in entries:
        if e.verified is None:
            assert e.notes, f"{e.id}: unverified without a note"
        else:
            assert e.source, f"{e.id}: verified without a source"
            assert any(f.checked for f in e.files), f"{e.id}: no file name was checked"
        assert e.capabilities.languages and e.license
    spanish = {e.id for e in entries if e.capabilities.spanish}
    assert {"qwen3-8b", "gemma-3-4b-it", "llama-3.1-8b-instruct", "smollm3-3b"} <= spanish
    gpt_oss = next(e for e in entries if e.id == "gpt-oss-20b")
    assert gpt_oss.capabilities.reasoning and gpt_oss.capabilities.tools
    assert gpt_oss.active_params < gpt_oss.params / 4  # a mixture of experts
    assert next(e for e in entries if e.id == "gemma-3-12b-it").capabilities.vision
    qwen = next(e for e in entries if e.id == "qwen3-8b")
    assert {f.quantization for f in qwen.files} >= {"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M",
                                                      "IQ4_XS", "Q3_K_M"}


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "is used twice"),
    (lambda d: d["models"][0].update(repo_id="no-slash"), "is not owner/name"),
    (lambda d: d["models"][0].pop("layers"), "layers is missing"),
    (lambda d: d["models"][0].update(params="8B"), "params has the wrong type"),
    (lambda d: d["models"][0].update(verified="last week"), "not a YYYY-MM-DD date"),
    (lambda d: d["models"][0].update(verified=None, notes=""), "needs a note"),
    (lambda d: d["models"][0]["files"].append(dict(d["models"][0]["files"][0])),
     "is listed twice"),
    (lambda d: d["models"][0]["files"][0].update(file="model.bin"), "is not a .gguf"),
    (lambda d: d["models"][0].update(colour="red"), "unknown keys"),
    (lambda d: d.update(version=1), "expected 2"),
])
def test_the_validator_names_each_problem(change: Any, problem: str) -> None:
    data = packaged()
    change(data)
    problems = validate_catalogue(data)
    assert any(problem in p for p in problems), problems
    with pytest.raises(CatalogueError, match=r"mine\.json"):
        parse_catalogue(json.dumps(data), "mine.json")


def test_a_users_copy_replaces_the_packaged_one(tmp_path: Path) -> None:
    config = resolve_paths().config_dir
    config.mkdir(parents=True, exist_ok=True)
    data = packaged()
    data["models"] = [m for m in data["models"] if m["id"].startswith("qwen3")]
    newer = copy.deepcopy(data["models"][0])
    newer.update(id="qwen4-1b", name="Qwen4 1B", verified="2027-01-05")
    data["models"].append(newer)
    (config / "catalogue.json").write_text(json.dumps(data))
    loaded = read_catalogue()
    assert loaded.source == str(config / "catalogue.json") and loaded.problem is None
    assert {e.id for e in load_catalogue()} == {m["id"] for m in data["models"]}
    # a broken copy: one line saying why, and the packaged catalogue in use
    (config / "catalogue.json").write_text('{"version": 2, "models": [{"id": "x"}]}')
    broken = read_catalogue()
    assert broken.source == "packaged" and broken.problem is not None
    assert "catalogue.json" in broken.problem and "using the packaged catalogue" in broken.problem
    assert "\n" not in broken.problem
    assert len(broken.entries) == len(packaged()["models"])


def test_models_catalogue_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_models_cli import run

    good = tmp_path / "good.json"
    good.write_text(json.dumps(packaged()))
    code, out, _ = run(capsys, "catalogue", "--check", str(good))
    assert code == 0 and "usable" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run(capsys, "catalogue", "--check", str(bad))
    assert code == 1 and err.startswith("lmdesk: error:") and "not JSON" in err
