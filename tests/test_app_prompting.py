"""build_messages: what the engine is sent for a stored conversation."""

from __future__ import annotations

import subprocess
import sys

from tui.engine.protocol import ChatMessage
from tui.prompting import build_messages
from tui.store import StoredMessage


def msg(role: str, content: str, status: str = "done") -> StoredMessage:
    return StoredMessage(id=content or "x", role=role, content=content, created=0.0,
                         status=status)


def test_system_prompt_then_history() -> None:
    out = build_messages("Be brief.", [msg("user", "hi"), msg("assistant", "hello")])
    assert out == (
        ChatMessage("system", "Be brief."), ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
    )


def test_blank_system_prompt_is_left_out() -> None:
    assert build_messages("  ", [msg("user", "hi")]) == (ChatMessage("user", "hi"),)


def test_error_and_empty_messages_are_skipped_and_roles_alternate() -> None:
    history = [
        msg("user", "first"),
        msg("assistant", "half a rep", status="error"),
        msg("user", "second"),
        msg("assistant", "", status="stopped"),
        msg("user", "third"),
        msg("assistant", "kept though stopped", status="stopped"),
    ]
    out = build_messages("", history)
    assert out == (
        ChatMessage("user", "first\n\nsecond\n\nthird"),
        ChatMessage("assistant", "kept though stopped"),
    )


def test_content_is_passed_through_byte_for_byte() -> None:
    text = "  spaced\n\n```py\nx = 1\n```\n "
    assert build_messages("", [msg("user", text)])[0].content == text


def test_prompting_does_not_import_textual() -> None:
    code = "import sys, tui.prompting; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
