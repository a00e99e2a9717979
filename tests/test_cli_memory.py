"""`lmdesk ask` uses your memories as the app does (issue 21.8): the real CLI, the real model."""

from __future__ import annotations

import json

from tests.test_cli_ask import _lmdesk


def test_ask_puts_a_memory_in_the_prompt_unless_no_memory() -> None:
    added = _lmdesk("memory", "add", "My dog is called Biscuit")
    assert added.returncode == 0, added.stderr
    question = ("ask", "--json", "--max-tokens", "8", "--temperature", "0",
                "What is my dog called?")
    with_memory = _lmdesk(*question)
    without = _lmdesk(*question, "--no-memory")
    assert with_memory.returncode == 0, with_memory.stderr
    assert without.returncode == 0, without.stderr
    tokens_with = json.loads(with_memory.stdout)["stats"]["prompt_tokens"]
    tokens_without = json.loads(without.stdout)["stats"]["prompt_tokens"]
    # the memory ("My dog is called Biscuit", under its heading) costs at least its words
    assert tokens_with >= tokens_without + 10, (tokens_with, tokens_without)


def test_ask_starts_with_the_system_prompt_a_new_conversation_has() -> None:
    question = ("ask", "--json", "--max-tokens", "4", "--no-memory", "Hello")
    default = _lmdesk(*question)
    explicit = _lmdesk(*question, "--system", "You are a helpful assistant.")
    assert default.returncode == 0 and explicit.returncode == 0, default.stderr
    assert (json.loads(default.stdout)["stats"]["prompt_tokens"]
            == json.loads(explicit.stdout)["stats"]["prompt_tokens"])
