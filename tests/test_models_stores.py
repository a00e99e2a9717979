"""Models other apps already downloaded, listed and loaded in place: a fake Ollama store made
here (manifests and blobs, one blob being the real SmolLM2), an LM Studio tree, and their
damaged entries reported one line each while the rest still list."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams
from tui.models.listing import LocalModel, list_models
from tui.models.stores import (
    app_folders,
    is_model_file,
    ollama_entries,
    ollama_root,
    ollama_tag_name,
)

TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}"
PARAMS = {"stop": ["<|im_end|>"], "temperature": 0.2}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(root: Path, data: bytes) -> str:
    digest = _digest(data)
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest


def _manifest(root: Path, name: str, layers: list[dict[str, object]]) -> Path:
    host, namespace, model, tag = name.split("/")
    path = root / "manifests" / host / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": _digest(b"{}"), "size": 2},
        "layers": layers,
    }))
    return path


def make_ollama_store(root: Path, smollm: Path) -> None:
    """A store as Ollama writes one: the model layer of smollm2:135m is the real SmolLM2 file
    (hardlinked under its digest), with template and params layers; plus three broken tags."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    model_digest = "sha256:" + hashlib.sha256(smollm.name.encode()).hexdigest()  # a stand-in
    os.link(smollm, blobs / model_digest.replace(":", "-"))
    template = _blob(root, TEMPLATE.encode())
    params = _blob(root, json.dumps(PARAMS).encode())
    _manifest(root, "registry.ollama.ai/library/smollm2/135m", [
        {"mediaType": "application/vnd.ollama.image.model", "digest": model_digest,
         "size": smollm.stat().st_size},
        {"mediaType": "application/vnd.ollama.image.template", "digest": template, "size": 1},
        {"mediaType": "application/vnd.ollama.image.params", "digest": params, "size": 1},
    ])
    damaged = _blob(root, b"\x00" * 4096)  # a blob that is not a GGUF
    _manifest(root, "hf.co/bartowski/Some-Model-GGUF/Q4_K_M", [
        {"mediaType": "application/vnd.ollama.image.model", "digest": damaged, "size": 4096}])
    _manifest(root, "registry.ollama.ai/library/gone/latest", [
        {"mediaType": "application/vnd.ollama.image.model",
         "digest": "sha256:" + "0" * 64, "size": 1}])
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{ this is not json")


def make_lmstudio_tree(home: Path, smollm: Path) -> Path:
    repo = home / ".lmstudio" / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    repo.mkdir(parents=True)
    os.link(smollm, repo / "SmolLM2-135M-Instruct-Q4_1.gguf")
    (repo / "mmproj-SmolLM2-f16.gguf").write_bytes(b"GGUF")  # a vision projector: not a model
    (repo / "big-00002-of-00002.gguf").write_bytes(b"GGUF")  # a later shard: not listed
    old = home / ".cache" / "lm-studio" / "models" / "TheBloke" / "Old-GGUF"
    old.mkdir(parents=True)
    (old / "old.Q4_K_M.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")  # truncated
    return repo / "SmolLM2-135M-Instruct-Q4_1.gguf"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _listed(home: Path, tmp_path: Path) -> dict[str, LocalModel]:
    models = list_models(packaged=False, hf_cache=False, home=home,
                         cache_path=tmp_path / "headers.json")
    return {m.name: m for m in models}


def test_ollama_names_follow_ollama_list() -> None:
    root = Path("/m/manifests")
    assert ollama_tag_name(root / "registry.ollama.ai/library/llama3.2/3b", root) == "llama3.2:3b"
    assert ollama_tag_name(root / "registry.ollama.ai/me/mine/latest", root) == "me/mine:latest"
    assert (ollama_tag_name(root / "hf.co/bartowski/X-GGUF/Q4_K_M", root)
            == "hf.co/bartowski/X-GGUF:Q4_K_M")
    assert ollama_root(Path("/h"), {}) == Path("/h/.ollama/models")
    assert ollama_root(Path("/h"), {"OLLAMA_MODELS": "/data/ollama"}) == Path("/data/ollama")


def test_an_ollama_store_is_listed_in_place_with_its_damage_reported(
    smollm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    root = home / ".ollama" / "models"
    make_ollama_store(root, smollm)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    before = _snapshot(root)
    rows = _listed(home, tmp_path)
    good = rows["smollm2:135m"]
    assert good.source == "ollama" and good.error is None and good.origin == str(root)
    assert good.architecture == "llama" and good.n_layers == 30 and good.shape is not None
    assert Path(good.path).parent == root / "blobs"  # the blob itself: nothing copied
    assert os.path.samefile(good.path, smollm)
    assert good.app_template == TEMPLATE
    assert json.loads(good.app_parameters or "{}") == PARAMS
    assert good.to_json()["app_parameters"] == PARAMS
    # each damaged tag is one row with one line, and the good one still lists
    assert "is missing" in (rows["gone:latest"].error or "")
    assert "ollama pull gone:latest" in (rows["gone:latest"].error or "")
    assert "damaged Ollama manifest" in (rows["broken:latest"].error or "")
    assert "not a GGUF" in (rows["hf.co/bartowski/Some-Model-GGUF:Q4_K_M"].error or "")
    for name in ("gone:latest", "broken:latest", "hf.co/bartowski/Some-Model-GGUF:Q4_K_M"):
        assert "\n" not in (rows[name].error or "") and rows[name].source == "ollama"
    assert _snapshot(root) == before  # read only: nothing written, moved or added
    # OLLAMA_MODELS moves the store
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    monkeypatch.setenv("OLLAMA_MODELS", str(moved))
    assert "smollm2:135m" in _listed(home, tmp_path)
    named = {e.name: e for e in ollama_entries(moved)}
    assert named["gone:latest"].error and named["broken:latest"].error
    assert named["smollm2:135m"].error is None and named["smollm2:135m"].template == TEMPLATE


def test_the_ollama_blob_loads_with_the_real_engine(smollm: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    make_ollama_store(home / ".ollama" / "models", smollm)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    model = _listed(home, tmp_path)["smollm2:135m"]
    assert not model.path.endswith(".gguf")
    with LocalEngine(LoadParams(model_path=model.path, n_ctx=512)) as engine:
        info = engine.load()
        assert info.n_layers == 30 and info.chat_template
        events = list(engine.generate([ChatMessage("user", "Say hello.")],
                                      SamplingParams(max_tokens=8, seed=1)))
    done = events[-1]
    assert isinstance(done, Done) and done.error is None and done.stats.generated_tokens > 0


def test_an_lm_studio_tree_is_listed_and_loads(smollm: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    target = make_lmstudio_tree(home, smollm)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    before = _snapshot(home)
    rows = _listed(home, tmp_path)
    good = rows["SmolLM2-135M-Instruct-Q4_1"]
    assert good.source == "lmstudio" and good.path == str(target)
    assert good.repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    assert not any(name.startswith("mmproj") or "00002-of" in name for name in rows)
    assert rows["old.Q4_K_M"].source == "lmstudio" and "truncated" in (rows["old.Q4_K_M"].error
                                                                         or "")
    assert _snapshot(home) == before
    with LocalEngine(LoadParams(model_path=good.path, n_ctx=512)) as engine:
        assert engine.load().n_layers == 30


def test_the_other_apps_folders(tmp_path: Path) -> None:
    home = tmp_path / "h"
    for rel in ("text-generation-webui/models", "jan/models", ".local/share/nomic.ai/GPT4All",
                ".local/share/Jan/data"):
        (home / rel).mkdir(parents=True)
    (home / ".lmstudio-home-pointer").write_text(str(tmp_path / "lms"))
    (tmp_path / "lms" / "models").mkdir(parents=True)
    found = {(f.source, f.path) for f in app_folders(home, {})}
    assert ("textgen-webui", home / "text-generation-webui" / "models") in found
    assert ("jan", home / "jan" / "models") in found
    assert ("gpt4all", home / ".local/share/nomic.ai/GPT4All") in found
    assert ("lmstudio", tmp_path / "lms" / "models") in found
    assert not any(f.path == home / ".lmstudio" / "models" for f in app_folders(home, {}))
    assert is_model_file(Path("a/model-00001-of-00003.gguf"))
    assert not is_model_file(Path("a/model-00003-of-00003.gguf"))
    assert not is_model_file(Path("a/mmproj-model-f16.gguf"))


def test_models_list_json_names_each_source(
    smollm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.test_models_cli import run

    home = tmp_path / "home"
    make_ollama_store(home / ".ollama" / "models", smollm)
    make_lmstudio_tree(home, smollm)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["smollm2:135m"]["source"] == "ollama"
    assert rows["smollm2:135m"]["predicted_tok_s"] > 0
    assert rows["SmolLM2-135M-Instruct-Q4_1"]["source"] == "lmstudio"
    assert rows["smollm2-135m"]["source"] == "packaged"
    assert rows["gone:latest"]["error"] and rows["gone:latest"]["verdict"] is None
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert sum("gone:latest" in line for line in lines) == 1
    assert any(line.startswith("gone:latest") and "unreadable (ollama)" in line for line in lines)
    assert any("smollm2:135m" in line and line.rstrip().endswith("ollama") for line in lines)


def test_an_ollama_tag_or_lm_studio_name_resolves_for_ask_and_the_app(
    smollm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.models.registry import ModelNotFound, resolve_model

    home = tmp_path / "home"
    make_ollama_store(home / ".ollama" / "models", smollm)
    target = make_lmstudio_tree(home, smollm)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    tag = resolve_model("smollm2:135m")
    assert tag.source == "ollama" and os.path.samefile(tag.path, smollm)
    assert resolve_model("SmolLM2-135M-Instruct-Q4_1").path == target
    with pytest.raises(ModelNotFound, match="is missing"):
        resolve_model("gone:latest")
    with pytest.raises(ModelNotFound, match=r"known: .*smollm2:135m"):
        resolve_model("no-such-model")
