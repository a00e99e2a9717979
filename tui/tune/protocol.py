"""The typed messages between a caller and the training process (frozen, picklable)."""

from __future__ import annotations

from dataclasses import dataclass

from tui.tune.pairs import Pair

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The attention and MLP projections the LoRA trains (Hugging Face names)."""


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 4
    rank: int = 8
    alpha: float | None = None
    """LoRA alpha; default: twice the rank. The adapter's scale is alpha / rank."""
    learning_rate: float = 1e-3
    batch_size: int = 4
    holdout: float = 0.1
    """The share of pairs kept out of training to measure the loss on."""
    seed: int = 0
    threads: int | None = None
    """PyTorch threads; default: physical cores."""

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def to_dict(self) -> dict[str, object]:
        return {"epochs": self.epochs, "rank": self.rank, "alpha": self.lora_alpha,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "holdout": self.holdout, "seed": self.seed, "threads": self.threads,
                "target_modules": list(TARGET_MODULES), "dropout": 0.0,
                "loss": "response tokens only", "optimizer": "AdamW, linear decay"}


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureRequest:
    """Tokenize the pairs in the base model's chat template; answer ``Measured``."""

    base_path: str
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class TrainRequest:
    base_path: str
    run_dir: str
    """Checkpoints and the adapter go here."""
    train: tuple[Pair, ...]
    holdout: tuple[Pair, ...]
    params: TrainParams
    resume: bool = False
    checkpoint_every: int = 10
    """Steps between checkpoints (one is also written at each epoch's end and on cancel)."""


@dataclass(frozen=True)
class CancelRequest:
    """Stop at the end of the current step, write a checkpoint, answer ``Cancelled``."""


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    tokens: tuple[int, ...]
    """Tokens of each pair, prompt and response, in the chat template."""
    response_tokens: tuple[int, ...]
    n_ctx_train: int


@dataclass(frozen=True)
class Stage:
    """What the process is doing before the first step ("loading the base model", ...)."""

    text: str


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: int
    loss: float
    tokens_per_s: float
    eta_s: float


@dataclass(frozen=True)
class Evaluated:
    step: int
    holdout_loss: float


@dataclass(frozen=True)
class Checkpointed:
    step: int


@dataclass(frozen=True)
class Finished:
    adapter_path: str
    adapter_bytes: int
    n_tensors: int
    steps: int
    train_losses: tuple[float, ...]
    holdout_before: float | None
    holdout_after: float | None
    holdout_per_epoch: tuple[float, ...]
    train_tokens: int
    """Tokens processed by the steps this process ran (prompt and response)."""
    train_seconds: float
    tokens_per_s: float
    peak_rss_bytes: int
    resumed_from: int = 0


@dataclass(frozen=True)
class Cancelled:
    step: int
    """The checkpoint's step: a resume starts after it."""


@dataclass(frozen=True)
class Failed:
    message: str


TuneEvent = Stage | Progress | Evaluated | Checkpointed | Finished | Cancelled | Failed
TERMINAL = (Finished, Cancelled, Failed)
