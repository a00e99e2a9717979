"""Turn a stored conversation into the messages sent to the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tui.engine.protocol import ChatMessage, Role

_ROLES: frozenset[str] = frozenset({"user", "assistant"})


class _MessageLike(Protocol):
    """What ``build_messages`` reads from a stored message (``tui.store.StoredMessage``)."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...

    @property
    def status(self) -> str: ...


def build_messages(
    system_prompt: str, history: Sequence[_MessageLike]
) -> tuple[ChatMessage, ...]:
    """The chat messages for the next reply: the system prompt, then the conversation.

    - Messages whose reply failed (``status == "error"``) and empty messages are left out.
    - Stopped and partial replies are kept: they are what the user saw.
    - Two messages in a row from the same role (a prompt whose reply failed, then another
      prompt) are joined with a blank line, because many chat templates insist that user and
      assistant alternate.
    - Contents are passed through unchanged, so the prompt prefix stays byte-stable between
      turns and the engine can reuse its KV cache.
    """
    out: list[ChatMessage] = []
    if system_prompt.strip():
        out.append(ChatMessage("system", system_prompt))
    for message in history:
        if message.status == "error" or message.role not in _ROLES:
            continue
        if not message.content.strip():
            continue
        role: Role = "user" if message.role == "user" else "assistant"
        if out and out[-1].role == role:
            out[-1] = ChatMessage(role, f"{out[-1].content}\n\n{message.content}")
        else:
            out.append(ChatMessage(role, message.content))
    return tuple(out)
