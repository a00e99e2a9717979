"""Bad input to `lmdesk tune`: one clear line, a non-zero exit, and nothing written."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest

from tests.tune_helpers import style_pairs, write_pairs
from tui.cli import main
from tui.tune.errors import TuneError
from tui.tune.pairs import read_pairs


def run_tune(data: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--data-dir", str(data), "tune", *argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_and_nothing_written(code: int, err: str, data: Path, *needles: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lmdesk: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (data / "tunes").exists()
    index = data / "index.json"
    assert not index.exists() or "quill" not in index.read_text()


# -- the pairs file: read without a model -------------------------------------------------------


def test_an_empty_pairs_file(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("")
    with pytest.raises(TuneError, match="no pairs"):
        read_pairs(tmp_path / "p.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    with pytest.raises(TuneError, match="no pairs"):
        read_pairs(tmp_path / "blank.jsonl")


@pytest.mark.parametrize(("text", "needle"), [
    ('{"instruction": "a", "response": "b"}\n\n{"instruction": "c" "response": "d"}\n',
     "line 3: not valid JSON"),
    ('{"instruction": "a", "response": "b"}\n["a", "b"]\n', "line 2: expected a JSON object"),
    ('{"instruction": "a"}\n', "line 1: no a response"),
    ('{"instruction": "a", "response": "   "}\n', "line 1: the response is empty"),
    ('{"instruction": 3, "response": "b"}\n', "line 1: 'instruction' must be text"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}\n', "line 1: 'messages' must be"),
])
def test_a_malformed_jsonl_line_is_named(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(TuneError) as info:
        read_pairs(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_csv_and_chat_format_pairs(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('question,answer\n"Hi, you",Hello\n\nWhy?,"Because, well"\n')
    pairs = read_pairs(csv_path)
    assert [(p.instruction, p.response, p.line) for p in pairs] == [
        ("Hi, you", "Hello", 2), ("Why?", "Because, well", 4)]
    bad = tmp_path / "bad.csv"
    bad.write_text("instruction,response\na,b\nc,d,e\n")
    with pytest.raises(TuneError, match="line 3: more fields"):
        read_pairs(bad)
    (tmp_path / "nohead.csv").write_text("a,b\nc,d\n")
    with pytest.raises(TuneError, match="line 1: the header must name"):
        read_pairs(tmp_path / "nohead.csv")
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"}]}) + "\n")
    assert [(p.system, p.instruction, p.response) for p in read_pairs(chat)] == [
        ("Be terse.", "Q", "A")]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"instruction": "a", "response": "b"}\n{"instruction": "\xff"}\n')
    with pytest.raises(TuneError, match="line 2: not UTF-8"):
        read_pairs(path)


# -- the whole command ---------------------------------------------------------------------


def test_cli_empty_and_malformed_pairs(tmp_path: Path, smollm: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs",
                            str(tmp_path / "empty.jsonl"), "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "no pairs")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "response": "b"}\n{oops\n')
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs",
                            str(tmp_path / "bad.jsonl"), "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "line 2", "not valid JSON")


@pytest.mark.model
def test_cli_a_pair_longer_than_the_context(tmp_path: Path, smollm: Path) -> None:
    data = tmp_path / "data"
    pairs = style_pairs()[:3]
    pairs[1] = {"instruction": "Tell me everything.", "response": "word " * 9000}
    path = write_pairs(tmp_path / "long.jsonl", pairs)
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs", str(path), "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "line 2", "longer than the context",
                                        "8,192 tokens")


def test_cli_a_base_model_the_trainer_cannot_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = write_pairs(tmp_path / "p.jsonl")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    code, _, err = run_tune(data, "--base", str(junk), "--pairs", str(path), "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "cannot read the base model")


def test_cli_an_architecture_the_trainer_cannot_read(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    data = tmp_path / "data"
    path = write_pairs(tmp_path / "p.jsonl")
    base = tmp_path / "tiny-bert.gguf"
    writer = gguf.GGUFWriter(str(base), "bert")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, _, err = run_tune(data, "--base", str(base), "--pairs", str(path), "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "bert model", "llama and gemma3")


@pytest.mark.model
def test_not_enough_memory_or_disk(tmp_path: Path, smollm: Path) -> None:
    from tui.store import Store
    from tui.tune.plan import Resources
    from tui.tune.run import PairsSource, Tuner, TuneSpec

    data = tmp_path / "data"
    spec = TuneSpec("quill", str(smollm), "smollm2-135m",
                    PairsSource.from_file(write_pairs(tmp_path / "p.jsonl")))
    with Store.open(data) as store:
        tuner = Tuner(data, store)
        with pytest.raises(TuneError, match="not enough memory: training needs about"):
            tuner.plan(spec, resources=Resources(200 << 20, 100 << 30, 2),
                       log_dir=tmp_path / "logs")
        with pytest.raises(TuneError, match="not enough disk"):
            tuner.plan(spec, resources=Resources(16 << 30, 1 << 20, 2),
                       log_dir=tmp_path / "logs")
        plan = tuner.plan(spec, resources=Resources(16 << 30, 100 << 30, 2),
                          log_dir=tmp_path / "logs")
    assert plan.estimate.verdict == "green"
    assert (plan.estimate.n_train, plan.estimate.n_holdout) == (36, 4)
    assert not (data / "tunes").exists()


def test_cli_says_the_install_command_when_the_extra_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_peft(name: str, package: str | None = None) -> object:
        return None if name == "peft" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_peft)
    data = tmp_path / "data"
    code, _, err = run_tune(data, "--pairs", "x.jsonl", "--name", "quill")
    assert_one_line_and_nothing_written(code, err, data, "peft missing",
                                        "pip install 'lmdesk[tune]'")
    assert not data.exists()


def test_cli_bad_parameters_and_names(tmp_path: Path, smollm: Path) -> None:
    data = tmp_path / "data"
    path = write_pairs(tmp_path / "p.jsonl")
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs", str(path), "--name",
                            "quill", "--rank", "0")
    assert_one_line_and_nothing_written(code, err, data, "--rank must be between")
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs", str(path), "--name",
                            "no/slashes")
    assert_one_line_and_nothing_written(code, err, data, "bad name")
    code, _, err = run_tune(data, "--base", str(smollm), "--pairs", str(path))
    assert_one_line_and_nothing_written(code, err, data, "--name")
    code, _, err = run_tune(data, "--resume", "nothing-here")
    assert_one_line_and_nothing_written(code, err, data, "no stopped run called")
