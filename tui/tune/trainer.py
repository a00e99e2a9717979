"""The training process: a LoRA on the base model, trained with PyTorch on the CPU.

Started by ``tui/tune/job.py`` (spawn) and driven over a pipe with ``tui/tune/protocol.py``.
transformers reads the GGUF itself (dequantising to float32); peft adds rank-r adapters to
the attention and MLP projections; a plain AdamW loop trains them with the loss on the
response tokens only (the final projection runs on those positions alone, which saves the
logits of every prompt token). A checkpoint (adapter, optimizer, step, losses) is written
every few steps, at each epoch's end and on cancel, so a run resumes where it stopped. At the
end the adapter is exported as a llama.cpp GGUF LoRA (``tui/tune/export.py``).

Like the model worker, it writes its native and library output to a log file, ignores SIGINT
(the caller decides when it stops) and refuses the network.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.tune.errors import TuneError
from tui.tune.protocol import (
    TARGET_MODULES,
    Cancelled,
    CancelRequest,
    Checkpointed,
    Evaluated,
    Failed,
    Finished,
    Measured,
    MeasureRequest,
    Progress,
    Stage,
    TrainRequest,
)
from tui.tune.tokens import ChatTokenizer, Example

CHECKPOINT = "checkpoint.pt"
ADAPTER = "adapter.gguf"
PEFT_PREFIX = "base_model.model."


def tune_main(conn: Connection, log_path: str | None = None) -> None:
    """Entry point of the training process: one request, its events, then exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tui.offline import install_from_env

    install_from_env()
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(key, value)
    if log_path:
        _redirect_output(log_path)
    try:
        request = conn.recv()
        if isinstance(request, MeasureRequest):
            conn.send(measure(request))
        elif isinstance(request, TrainRequest):
            _Training(conn, request).run()
    except (EOFError, BrokenPipeError):
        pass  # the caller went away
    except TuneError as exc:
        _send(conn, Failed(str(exc)))
    except MemoryError:
        _send(conn, Failed(_("the training ran out of memory: use fewer or shorter pairs, or a "
                             "smaller base model")))
    except Exception as exc:  # a bug of ours: one line for the user, the traceback in the log
        traceback.print_exc()
        _send(conn, Failed(_("internal error in the training process: {exc!r}", exc=exc)))


def _send(conn: Connection, event: object) -> None:
    with contextlib.suppress(OSError, EOFError, BrokenPipeError):
        conn.send(event)


def _redirect_output(log_path: str) -> None:
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def measure(request: MeasureRequest) -> Measured:
    tokenizer = ChatTokenizer(request.base_path)
    examples = [tokenizer.example(p) for p in request.pairs]
    return Measured(tuple(len(e.ids) for e in examples),
                    tuple(e.n_response for e in examples), tokenizer.n_ctx_train)


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def load_base(base_path: str) -> Any:
    """The GGUF as a float32 transformers model (``TuneError`` when it cannot be read)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = Path(base_path)
    try:
        with _memoised_gguf_reading():
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32,
                local_files_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # transformers raises ValueError, KeyError, OSError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TuneError(_("the trainer cannot read the base model {base_path} ({value})",
                          base_path=base_path, value=first[:200])
                        ) from None
    model.config.use_cache = False
    return model


@contextlib.contextmanager
def _memoised_gguf_reading() -> Iterator[None]:
    """transformers parses the whole GGUF twice (for the config, then for the tensors) and
    builds gguf's tensor-name map once per module, about 400 times: over half of its load time
    for SmolLM2 (27 s of 2-core time, 14 s with both memoised for the load)."""
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


@dataclass
class _State:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    holdout_before: float | None = None
    per_epoch: list[float] = field(default_factory=list)


class _Training:
    def __init__(self, conn: Connection, request: TrainRequest) -> None:
        self.conn = conn
        self.req = request
        self.params = request.params
        self.run_dir = Path(request.run_dir)
        self.torch: Any = None
        self.model: Any = None
        self.optimizer: Any = None
        self.state = _State()
        self.cancelled = False

    # -- set-up --------------------------------------------------------------------------

    def run(self) -> None:
        p = self.params
        self.stage(_("reading the pairs in the model's chat template"))
        tokenizer = ChatTokenizer(self.req.base_path)
        train = [tokenizer.example(x) for x in self.req.train]
        holdout = [tokenizer.example(x) for x in self.req.holdout]
        tokenizer.close()
        self.stage(_("loading the base model"))
        import torch

        self.torch = torch
        from tui.engine.local import physical_cores

        torch.set_num_threads(p.threads or physical_cores())
        torch.manual_seed(p.seed)
        self.model = self._with_lora(load_base(self.req.base_path))
        trainable = [t for t in self.model.parameters() if t.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=p.learning_rate, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(train) / p.batch_size)
        total = steps_per_epoch * p.epochs
        if self.req.resume:
            self._load_checkpoint()
        elif holdout:
            self.stage(_("measuring the held-out loss before training"))
            self.state.holdout_before = self.evaluate(holdout)
            self.send(Evaluated(0, self.state.holdout_before))
        resumed_from = self.state.step
        started = time.perf_counter()
        tokens_done = 0
        while self.state.step < total:
            if self._cancel_asked():
                self._checkpoint()
                self.send(Cancelled(self.state.step))
                return
            step = self.state.step
            epoch, index = divmod(step, steps_per_epoch)
            order = self._order(epoch, len(train))
            batch = [train[i] for i in order[index * p.batch_size:(index + 1) * p.batch_size]]
            for group in self.optimizer.param_groups:
                group["lr"] = p.learning_rate * (1.0 - 0.9 * step / total)
            loss = self.train_step(batch)
            tokens_done += sum(len(e.ids) for e in batch)
            self.state.step += 1
            self.state.losses.append(loss)
            elapsed = time.perf_counter() - started
            rate = tokens_done / elapsed if elapsed > 0 else 0.0
            eta = elapsed / (self.state.step - resumed_from) * (total - self.state.step)
            self.send(Progress(self.state.step, total, epoch + 1, loss, rate, eta))
            if self.state.step % steps_per_epoch == 0:
                if holdout:
                    value = self.evaluate(holdout)
                    self.state.per_epoch.append(value)
                    self.send(Evaluated(self.state.step, value))
                self._checkpoint()
            elif self.state.step % max(1, self.req.checkpoint_every) == 0:
                self._checkpoint()
        seconds = time.perf_counter() - started
        self.stage(_("writing the GGUF adapter"))
        adapter = self.run_dir / ADAPTER
        n_tensors = self.export(adapter)
        self.send(Finished(
            adapter_path=str(adapter), adapter_bytes=adapter.stat().st_size,
            n_tensors=n_tensors, steps=self.state.step,
            train_losses=tuple(self.state.losses),
            holdout_before=self.state.holdout_before,
            holdout_after=self.state.per_epoch[-1] if self.state.per_epoch else None,
            holdout_per_epoch=tuple(self.state.per_epoch), train_tokens=tokens_done,
            train_seconds=seconds, tokens_per_s=tokens_done / seconds if seconds > 0 else 0.0,
            peak_rss_bytes=peak_rss_bytes(), resumed_from=resumed_from,
        ))

    def _with_lora(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in TARGET_MODULES if t in present]
        if not targets:
            raise TuneError(_("the base model has none of the projections a LoRA trains here "
                              "({join})", join=', '.join(TARGET_MODULES)))
        config = LoraConfig(r=self.params.rank, lora_alpha=self.params.lora_alpha,
                            lora_dropout=0.0, target_modules=targets, bias="none",
                            task_type="CAUSAL_LM")
        return get_peft_model(model, config)

    def stage(self, text: str) -> None:
        self.send(Stage(text))

    def send(self, event: object) -> None:
        try:
            self.conn.send(event)
        except (OSError, EOFError):
            self.cancelled = True  # nobody is listening: stop at the next step, keep the work

    def _cancel_asked(self) -> bool:
        try:
            while self.conn.poll():
                if isinstance(self.conn.recv(), CancelRequest):
                    self.cancelled = True
        except (OSError, EOFError):
            self.cancelled = True
        return self.cancelled

    def _order(self, epoch: int, n: int) -> list[int]:
        import random

        order = list(range(n))
        random.Random(self.params.seed * 1000 + epoch).shuffle(order)
        return order

    # -- the maths -----------------------------------------------------------------------

    def _batch(self, batch: list[Example]) -> tuple[Any, Any, Any]:
        torch = self.torch
        width = max(len(e.ids) for e in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        response = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, e in enumerate(batch):
            ids[row, :len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
            mask[row, :len(e.ids)] = 1
            response[row, e.n_prompt:len(e.ids)] = True
        return ids, mask, response

    def _loss(self, batch: list[Example], reduction: str = "mean") -> Any:
        """Cross-entropy of the response tokens: the output head runs on those positions."""
        torch = self.torch
        ids, mask, response = self._batch(batch)
        inner = self.model.get_base_model()
        hidden = inner.model(input_ids=ids, attention_mask=mask, use_cache=False
                             ).last_hidden_state
        predicts = response[:, 1:]
        states = hidden[:, :-1][predicts]
        targets = ids[:, 1:][predicts]
        logits = inner.lm_head(states).float()
        cap = getattr(inner.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.nn.functional.cross_entropy(logits, targets, reduction=reduction)

    def train_step(self, batch: list[Example]) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def evaluate(self, examples: list[Example]) -> float:
        """Mean loss per response token over ``examples``."""
        torch = self.torch
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(examples), self.params.batch_size):
                batch = examples[i:i + self.params.batch_size]
                total += float(self._loss(batch, reduction="sum"))
                count += sum(e.n_response for e in batch)
        return total / max(1, count)

    # -- checkpoints and export ----------------------------------------------------------

    def _checkpoint(self) -> None:
        from peft import get_peft_model_state_dict

        torch = self.torch
        data = {
            "step": self.state.step, "losses": self.state.losses,
            "holdout_before": self.state.holdout_before, "per_epoch": self.state.per_epoch,
            "lora": get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
            "params": self.params.to_dict(),
        }
        target = self.run_dir / CHECKPOINT
        tmp = target.with_name(f".{CHECKPOINT}.tmp")
        try:
            torch.save(data, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TuneError(_("cannot write the checkpoint in {run_dir} ({strerror})",
                              run_dir=self.run_dir, strerror=exc.strerror)
                            ) from None
        self.send(Checkpointed(self.state.step))

    def _load_checkpoint(self) -> None:
        from peft import set_peft_model_state_dict

        torch = self.torch
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            raise TuneError(_("there is no checkpoint to resume from in {run_dir}",
                              run_dir=self.run_dir))
        try:
            data = torch.load(path, weights_only=False)
        except Exception as exc:
            raise TuneError(_("the checkpoint {path} cannot be read ({exc!r}); start over",
                              path=path, exc=exc)
                            ) from None
        if data.get("params") != self.params.to_dict():
            raise TuneError(_("the checkpoint was written with other parameters; start over"))
        set_peft_model_state_dict(self.model, data["lora"])
        self.optimizer.load_state_dict(data["optimizer"])
        torch.set_rng_state(data["rng"])
        self.state = _State(int(data["step"]), list(data["losses"]), data["holdout_before"],
                            list(data["per_epoch"]))
        self.stage(_("resuming after step {step}", step=self.state.step))

    def lora_weights(self) -> list[Any]:
        from tui.tune.export import LoraWeights

        out = []
        for name, module in self.model.named_modules():
            lora_a = getattr(module, "lora_A", None)
            if lora_a is None or "default" not in lora_a:
                continue
            out.append(LoraWeights(
                module=name.removeprefix(PEFT_PREFIX),
                a=lora_a["default"].weight.detach().cpu().numpy(),
                b=module.lora_B["default"].weight.detach().cpu().numpy(),
            ))
        return out

    def export(self, path: Path) -> int:
        from tui.engine.gguf import read_header
        from tui.tune.export import write_lora_gguf

        header = read_header(self.req.base_path)
        return write_lora_gguf(
            path, self.lora_weights(), arch=header.architecture, n_layers=header.n_layers,
            n_head=header.n_heads, n_head_kv=header.n_kv_heads or header.n_heads,
            alpha=self.params.lora_alpha, name=self.run_dir.name,
            extra={"lmdesk.base_model": Path(self.req.base_path).name},
        )
