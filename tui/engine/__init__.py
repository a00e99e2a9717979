"""Inference: one worker process per loaded model, driven over a small typed protocol.

Nothing in this package imports Textual, and the calling process never imports llama_cpp.
"""

from tui.engine.errors import EngineError, InvalidParameter, ModelLoadError
from tui.engine.protocol import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationStats,
    LoadParams,
    ModelInfo,
    SamplingParams,
    TextDelta,
)

__all__ = [
    "ChatMessage",
    "Done",
    "EngineError",
    "EngineEvent",
    "GenerationStats",
    "InvalidParameter",
    "LoadParams",
    "ModelInfo",
    "ModelLoadError",
    "SamplingParams",
    "TextDelta",
]
