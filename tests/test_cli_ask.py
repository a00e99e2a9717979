"""`lmdesk ask` as a user runs it: a real process, the real default model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli import with_default_command


def _lmdesk(
    *args: str, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ask_streams_a_real_answer() -> None:
    result = _lmdesk(
        "ask",
        "--max-tokens",
        "60",
        "--temperature",
        "0",
        "Write a Python function that reverses a string",
    )
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout or "[::-1]" in result.stdout, result.stdout


def test_ask_json_carries_the_stats() -> None:
    result = _lmdesk("ask", "--json", "--max-tokens", "12", "Say hello")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "smollm2-135m"
    assert record["reply"].strip()
    stats = record["stats"]
    for key in (
        "prompt_tokens",
        "prompt_tokens_per_s",
        "generated_tokens",
        "generation_tokens_per_s",
        "time_to_first_token_s",
        "reused_tokens",
        "stop_reason",
    ):
        assert key in stats
    assert stats["generated_tokens"] > 0 and stats["generation_tokens_per_s"] > 0
    assert record["error"] is None


def test_ask_reads_the_prompt_from_stdin() -> None:
    result = _lmdesk("ask", "--json", "--max-tokens", "8", stdin="What is 2 + 2?\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["prompt_tokens"] > 5


def test_ask_with_a_missing_model_fails_cleanly(tmp_path: Path) -> None:
    result = _lmdesk("ask", "--model", str(tmp_path / "missing.gguf"), "hi")
    assert result.returncode == 1
    assert result.stderr.startswith("lmdesk: error:")
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_with_an_unknown_model_name_lists_the_known_ones() -> None:
    result = _lmdesk("ask", "--model", "llama-9000", "hi")
    assert result.returncode == 1
    assert "no model named 'llama-9000'" in result.stderr and "smollm2-135m" in result.stderr


def test_ask_with_a_bad_parameter_value() -> None:
    result = _lmdesk("ask", "--temperature", "hot", "hi")
    assert result.returncode == 2
    assert "invalid float value: 'hot'" in result.stderr
    result = _lmdesk("ask", "--n-ctx", "-5", "hi")
    assert result.returncode == 1
    assert "n_ctx must be at least" in result.stderr and "Traceback" not in result.stderr


def test_ask_prompt_over_the_context_window() -> None:
    result = _lmdesk("ask", "--n-ctx", "64", "word " * 400)
    assert result.returncode == 1
    assert "context window holds 256" in result.stderr  # llama.cpp pads to 256


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["app"]),
        (["--data-dir", "/tmp/x"], ["--data-dir", "/tmp/x", "app"]),
        (["-m", "foo"], ["app", "-m", "foo"]),
        (["ask", "hi"], ["ask", "hi"]),
        (["--data-dir=/d", "bench"], ["--data-dir=/d", "bench"]),
    ],
)
def test_the_app_is_the_default_command(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv) == expected


def test_ask_fills_a_template_from_the_library() -> None:
    result = _lmdesk(
        "ask", "--json", "--max-tokens", "8", "--template", "code-explain",
        "--var", "code=def f(s): return s[::-1]", "--var", "language=Python",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    # the filled template is much longer than any of the values given
    assert record["stats"]["prompt_tokens"] > 30


def test_ask_with_a_template_missing_a_variable_names_it() -> None:
    result = _lmdesk("ask", "--template", "code-explain")
    assert result.returncode == 1
    assert "missing required variable 'code'" in result.stderr


def test_templates_and_memory_commands_round_trip(tmp_path: Path) -> None:
    listing = _lmdesk("templates", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {t["name"] for t in json.loads(listing.stdout)}
    assert {"email-reply", "email-reply-es", "code-explain", "translate"} <= names
    exported = tmp_path / "mine.json"
    assert _lmdesk("templates", "export", "email-reply", str(exported)).returncode == 0
    assert "email-reply" in exported.read_text()
    added = _lmdesk("memory", "add", "My name is Ada", "--json")
    assert added.returncode == 0, added.stderr
    memories = json.loads(_lmdesk("memory", "list", "--json").stdout)
    assert [m["text"] for m in memories] == ["My name is Ada"]


def test_ask_answers_from_a_knowledge_base(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reactor.md").write_text(
        "# Zorblat reactor\n\nThe Zorblat reactor is cooled by liquid gallium.\n"
    )
    added = _lmdesk("kb", "add", "notes", str(docs))
    assert added.returncode == 0, added.stderr
    result = _lmdesk(
        "ask", "--json", "--kb", "notes", "--temperature", "0", "--max-tokens", "30",
        "What cools the Zorblat reactor?",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["sources"][0]["path"].endswith("reactor.md")
    assert "gallium" in record["reply"].lower()
    unknown = _lmdesk("ask", "--kb", "nope", "hi")
    assert unknown.returncode == 1 and "nope" in unknown.stderr
