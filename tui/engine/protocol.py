"""The typed messages exchanged with a model worker, and the parameters they carry.

Requests go from the caller to the worker, events come back. Everything here is a frozen
dataclass of plain values so it pickles across the pipe and reads the same on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from tui.engine.errors import InvalidParameter
from tui.engine.json_schema import check_schema
from tui.i18n import _

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]
ToolChoice = str
""""auto", "none", "required", or the name of one tool the model must call."""

DEFAULT_CTX_CAP = 8192
MAX_CTX = 2**31 - 1


def _check_int(name: str, value: object, minimum: int, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(_("{name} must be a whole number, got {value!r}",
                                 name=name, value=value))
    if value < minimum:
        raise InvalidParameter(_("{name} must be at least {minimum}, got {value}",
                                 name=name, minimum=minimum, value=value))


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(_("{name} must be a number, got {value!r}", name=name, value=value))
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidParameter(_("{name} must be between {low:g} and {high:g}, got {value}",
                                 name=name, low=low, high=high, value=value))


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
    flash_attn: bool = True
    """Flash attention; default: on (llama.cpp's own default on every backend it supports)."""
    seed: int = 0
    lora_path: str | None = None
    chat_template: str | None = None
    """A Jinja chat template used instead of the one in the GGUF (fixes a wrong template)."""
    rpc_servers: tuple[str, ...] = ()
    """llama.cpp RPC workers ("host:port") that take layers of the model."""
    allow_ctx_beyond_train: bool = False
    """Let n_ctx exceed the model's trained context (quality drops; memory grows)."""
    kv_state_dir: str | None = None
    """Where conversation KV states are kept across restarts (None: not kept)."""
    kv_state_budget_mb: int = 2048
    """The most disk those states take; the least recently used go first."""
    share_cores_dir: str | None = None
    """A folder shared by the workers of this machine: those generating at once split their
    threads (None: this worker always uses all of its own)."""

    def validate(self) -> None:
        if not isinstance(self.model_path, str) or not self.model_path:
            raise InvalidParameter(_("model path is empty: give a GGUF file or a model name"))
        _check_int("n_ctx", self.n_ctx, 16)
        if self.n_ctx is not None and self.n_ctx > MAX_CTX and self.allow_ctx_beyond_train:
            raise InvalidParameter(_("n_ctx must be at most {MAX_CTX:,}, got {n_ctx:,}",
                                     MAX_CTX=MAX_CTX, n_ctx=self.n_ctx))
        _check_int("n_threads", self.n_threads, 1)
        _check_int("n_threads_batch", self.n_threads_batch, 1)
        _check_int("n_gpu_layers", self.n_gpu_layers, -1)
        _check_int("n_batch", self.n_batch, 1, allow_none=False)
        _check_int("seed", self.seed, 0, allow_none=False)
        _check_int("kv_state_budget_mb", self.kv_state_budget_mb, 0, allow_none=False)


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
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits; -100 bans a token."""
    top_logprobs: int | None = None
    """None: no log-probabilities; 0..20: each token's log-probability and this many
    alternatives (OpenAI's ``logprobs`` / ``top_logprobs``)."""
    grammar: str | None = None
    """A GBNF grammar the output must follow."""
    json_schema: str | None = None
    """A JSON schema (as JSON text) the output must follow; "{}" means any JSON object."""
    ignore_eos: bool = False
    reasoning_budget: int = -1
    """Tokens the model may spend thinking: -1 unlimited, 0 asks it not to think (where its
    template supports that); at the budget the reasoning block is closed and it answers."""
    delta_gather_s: float = 0.0
    """Seconds the worker may gather streamed text for before sending it, while tokens come
    fast (the first is always sent at once); 0: only when they come faster than 3 ms apart.
    The app asks for a little, since it draws a few times a second, not once per token."""
    prompt_lookup: bool = True
    """Speculate from the context (prompt lookup): draft the tokens that followed the reply's
    last few tokens earlier on and check them in one batch. Faster when the reply copies from
    the context; paused for a reply whose drafts are mostly wrong; never used under a grammar
    or JSON schema, nor where llama.cpp's batch logits differ from one token's (it would
    change the reply)."""

    def validate(self) -> None:
        _check_float("temperature", self.temperature, 0.0, 5.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        _check_int("top_k", self.top_k, 0, allow_none=False)
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("repeat_penalty", self.repeat_penalty, 0.0, 10.0)
        _check_int("max_tokens", self.max_tokens, 1, allow_none=False)
        _check_int("seed", self.seed, 0)
        _check_float("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_float("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _check_int("top_logprobs", self.top_logprobs, 0)
        if self.top_logprobs is not None and self.top_logprobs > 20:
            raise InvalidParameter(_("top_logprobs must be at most 20, got {top_logprobs}",
                                     top_logprobs=self.top_logprobs))
        _check_int("reasoning_budget", self.reasoning_budget, -1, allow_none=False)
        _check_float("delta_gather_s", self.delta_gather_s, 0.0, 1.0)
        if not isinstance(self.prompt_lookup, bool):
            raise InvalidParameter(f"prompt_lookup must be true or false, got "
                                   f"{self.prompt_lookup!r}")
        for pair in self.logit_bias:
            if (not isinstance(pair, tuple) or len(pair) != 2 or isinstance(pair[0], bool)
                    or not isinstance(pair[0], int) or pair[0] < 0):
                raise InvalidParameter(_("logit_bias needs (token id, bias) pairs, got {pair!r}",
                                         pair=pair))
            _check_float("a logit_bias value", pair[1], -100.0, 100.0)
        if not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidParameter(_("stop must be non-empty strings, got {stop!r}",
                                     stop=self.stop))
        if self.grammar is not None and self.json_schema is not None:
            raise InvalidParameter(_("give a grammar or a JSON schema, not both"))
        if self.grammar is not None and (not isinstance(self.grammar, str)
                                         or not self.grammar.strip()):
            raise InvalidParameter(_("grammar must be a non-empty GBNF text"))
        if self.json_schema is not None:
            if not isinstance(self.json_schema, str):
                raise InvalidParameter(_("json_schema must be JSON text"))
            check_schema(self.json_schema)


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked to call."""

    id: str
    name: str
    arguments: str
    """The arguments as JSON text, as the model wrote them."""


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call (OpenAI's ``tools[].function``)."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object", "properties": {}}'
    """Its JSON schema, as JSON text (kept as text so the spec is hashable and pickles)."""


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    reasoning: str = ""
    """An assistant turn's reasoning; sent back only to templates that ask for it."""
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant turn's calls."""
    tool_call_id: str | None = None
    """A ``tool`` message: the call it answers."""
    name: str | None = None
    """A ``tool`` message: the function's name."""


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
    reasoning_tokens: int = 0
    """Of ``generated_tokens``, those spent in the reasoning block."""
    reasoning_seconds: float = 0.0
    n_threads: int = 0
    """The fewest threads any part of the reply ran on (0: not reported); fewer than loaded
    when other models were generating at the same time."""
    drafted_tokens: int = 0
    """Tokens drafted by prompt lookup and checked (0: no drafts, or lookup off)."""
    accepted_tokens: int = 0
    """Of ``drafted_tokens``, those the model agreed with (each one a decode saved)."""


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
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"


@dataclass(frozen=True)
class CancelRequest:
    request_id: int


@dataclass(frozen=True)
class TokenizeRequest:
    request_id: int
    text: str
    messages: tuple[ChatMessage, ...] = ()
    """When given, count the chat-formatted prompt of these messages instead of ``text``."""
    return_ids: bool = False
    """Also send the token ids back (``TokenCount.ids``)."""
    parse_special: bool = False
    """Tokenize ``text`` with special tokens parsed (``<|im_end|>`` becomes one control
    token), as only a chat template's own markup ever is."""


@dataclass(frozen=True)
class EmbedRequest:
    request_id: int
    texts: tuple[str, ...]


@dataclass(frozen=True)
class UnloadRequest:
    pass


Request = (LoadRequest | GenerateRequest | CancelRequest | TokenizeRequest | EmbedRequest
           | UnloadRequest)


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
class ReasoningDelta:
    """Text of the model's reasoning block (never part of the answer)."""

    request_id: int
    text: str
    n_tokens: int = 1


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the first one for an ``index`` carries its id and name, later
    ones more of its arguments."""

    request_id: int
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Done:
    request_id: int
    text: str
    """The answer (without the reasoning block or tool-call markup)."""
    stats: GenerationStats
    error: str | None = None
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    """One per answer token when ``SamplingParams.top_logprobs`` was set."""
    notes: tuple[str, ...] = ()
    """Things the user should know that did not stop the reply (a damaged saved state)."""


@dataclass(frozen=True)
class TokenCount:
    request_id: int
    count: int
    ids: tuple[int, ...] = ()
    """The tokens, when the request asked for them."""


@dataclass(frozen=True)
class WorkerError:
    """A failure in the worker. ``request_id`` is None for load failures."""

    message: str
    request_id: int | None = None


@dataclass(frozen=True)
class Embeddings:
    request_id: int
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int = 0


EngineEvent = TextDelta | ReasoningDelta | ToolCallDelta | Done
WorkerEvent = (Loaded | TextDelta | ReasoningDelta | ToolCallDelta | Done | TokenCount
               | Embeddings | WorkerError)


@dataclass
class Conversation:
    """Convenience for callers that keep a running chat (the CLI and the benchmarks)."""

    system: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)

    def as_messages(self) -> tuple[ChatMessage, ...]:
        head = (ChatMessage("system", self.system),) if self.system else ()
        return head + tuple(self.messages)
