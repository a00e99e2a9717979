"""The interface every engine offers: a local worker process, a remote server, a scripted fake."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from tui.engine.protocol import (
    ChatMessage,
    EngineEvent,
    ModelInfo,
    SamplingParams,
    ToolChoice,
    ToolSpec,
)


@runtime_checkable
class Engine(Protocol):
    """A loaded (or loadable) model.

    ``generate`` yields ``ReasoningDelta``, ``TextDelta`` and ``ToolCallDelta`` events then
    exactly one ``Done`` (which repeats the whole answer, reasoning and calls); failures during
    a reply arrive as a ``Done`` whose ``stats.stop_reason`` is ``"error"`` and whose ``error``
    says why, with the partial text kept. ``cancel`` may be called from any thread while a
    generation runs. Callers pass ``tools`` only when there are some: an engine that cannot
    call tools raises ``EngineError`` saying so.
    """

    @property
    def info(self) -> ModelInfo | None: ...

    @property
    def alive(self) -> bool: ...

    def load(self) -> ModelInfo: ...

    def generate(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingParams,
        *,
        raw_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> Iterator[EngineEvent]: ...

    def cancel(self) -> None: ...

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int: ...

    def unload(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """An engine that can also turn texts into vectors (``POST /v1/embeddings``, dense
    knowledge-base search)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
