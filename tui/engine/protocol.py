"""The typed messages exchanged with a model worker, and the parameters they carry.

Requests go from the caller to the worker, events come back. Everything here is a frozen
dataclass of plain values so it pickles across the pipe and reads the same on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from tui.engine.errors import InvalidParameter

Role = Literal["system", "user", "assistant"]
StopReason = Literal["stop", "length", "cancelled", "error"]

DEFAULT_CTX_CAP = 8192


def _check_int(name: str, value: object, minimum: int, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InvalidParameter(f"{name} must be at least {minimum}, got {value}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidParameter(f"{name} must be between {low:g} and {high:g}, got {value}")


@dataclass(frozen=True)
class LoadParams:
    """How to load a model. ``None`` means "the engine picks", and the pick is reported back."""

    model_path: str
    n_ctx: int | None = None
    """Context window in tokens; default: the model's trained context capped at 8192."""
    n_threads: int | None = None
    """Threads for generation; default: physical cores."""
    n_threads_batch: int | None = None
    """Threads for prompt evaluation; default: all logical cores."""
    n_gpu_layers: int | None = None
    """Layers offloaded to the GPU; default: all when the build has a GPU backend, else 0."""
    n_batch: int = 512
    flash_attn: bool | None = None
    """Flash attention; default: on when layers run on a GPU."""
    seed: int = 0
    lora_path: str | None = None

    def validate(self) -> None:
        if not isinstance(self.model_path, str) or not self.model_path:
            raise InvalidParameter("model path is empty: give a GGUF file or a model name")
        _check_int("n_ctx", self.n_ctx, 16)
        _check_int("n_threads", self.n_threads, 1)
        _check_int("n_threads_batch", self.n_threads_batch, 1)
        _check_int("n_gpu_layers", self.n_gpu_layers, -1)
        _check_int("n_batch", self.n_batch, 1, allow_none=False)
        _check_int("seed", self.seed, 0, allow_none=False)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. The defaults suit chat on small models."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    seed: int | None = None
    """Per-request seed; None keeps the load seed's stream going."""

    def validate(self) -> None:
        _check_float("temperature", self.temperature, 0.0, 5.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        _check_int("top_k", self.top_k, 0, allow_none=False)
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("repeat_penalty", self.repeat_penalty, 0.0, 10.0)
        _check_int("max_tokens", self.max_tokens, 1, allow_none=False)
        _check_int("seed", self.seed, 0)
        if not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidParameter(f"stop must be non-empty strings, got {self.stop!r}")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and how it was loaded (the choices made for ``None`` params)."""

    path: str
    name: str
    architecture: str
    n_ctx: int
    n_ctx_train: int
    n_layers: int
    n_params: int
    size_bytes: int
    chat_template: str | None
    n_threads: int
    n_threads_batch: int
    n_gpu_layers: int
    flash_attn: bool
    gpu_backend: bool
    load_seconds: float
    worker_pid: int

    @property
    def is_base_model(self) -> bool:
        """A model with no chat template: it runs in plain completion mode."""
        return not self.chat_template


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    prompt_tokens_per_s: float
    generated_tokens: int
    generation_tokens_per_s: float
    time_to_first_token_s: float
    reused_tokens: int
    """Prompt tokens taken from the KV cache instead of evaluated again."""
    evaluated_prompt_tokens: int
    stop_reason: StopReason
    total_seconds: float


# --- requests (caller -> worker) -------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    params: LoadParams


@dataclass(frozen=True)
class GenerateRequest:
    request_id: int
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    raw_prompt: str | None = None
    """Plain completion: send this text as is, ignoring ``messages`` and any chat template."""


@dataclass(frozen=True)
class CancelRequest:
    request_id: int


@dataclass(frozen=True)
class TokenizeRequest:
    request_id: int
    text: str
    messages: tuple[ChatMessage, ...] = ()
    """When given, count the chat-formatted prompt of these messages instead of ``text``."""


@dataclass(frozen=True)
class UnloadRequest:
    pass


Request = LoadRequest | GenerateRequest | CancelRequest | TokenizeRequest | UnloadRequest


# --- events (worker -> caller) ---------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    info: ModelInfo


@dataclass(frozen=True)
class TextDelta:
    request_id: int
    text: str
    n_tokens: int = 1


@dataclass(frozen=True)
class Done:
    request_id: int
    text: str
    stats: GenerationStats
    error: str | None = None


@dataclass(frozen=True)
class TokenCount:
    request_id: int
    count: int


@dataclass(frozen=True)
class WorkerError:
    """A failure in the worker. ``request_id`` is None for load failures."""

    message: str
    request_id: int | None = None


EngineEvent = TextDelta | Done
WorkerEvent = Loaded | TextDelta | Done | TokenCount | WorkerError


@dataclass
class Conversation:
    """Convenience for callers that keep a running chat (the CLI and the benchmarks)."""

    system: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)

    def as_messages(self) -> tuple[ChatMessage, ...]:
        head = (ChatMessage("system", self.system),) if self.system else ()
        return head + tuple(self.messages)
