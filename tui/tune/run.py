"""A tuning run from start to finish: check, plan, train, compare, record, register.

Layout in the data folder::

    tunes/NAME.partial/   while it trains: plan.json, pairs.jsonl, checkpoint.pt, train.log
    tunes/NAME/           once done: adapter.gguf, record.json, pairs.jsonl, train.log

Bad input is found before anything is written. A run becomes ``tunes/NAME`` and a model
profile only once its adapter has loaded in the normal engine (llama.cpp) and answered; until
then it is a ``.partial`` folder that ``resume`` continues from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.engine.protocol import DEFAULT_CTX_CAP, ChatMessage
from tui.i18n import _
from tui.tune import plan as planning
from tui.tune.errors import TuneError
from tui.tune.job import LOG_NAME, TuneProcess, measure
from tui.tune.pairs import Pair, pairs_jsonl, read_pairs, sha256_file, sha256_text
from tui.tune.protocol import Finished, MeasureRequest, TrainParams, TrainRequest

if TYPE_CHECKING:
    from tui.models.profiles import Profile
    from tui.store import Store

TUNES_DIR = "tunes"
PARTIAL_SUFFIX = ".partial"
PLAN_FILE = "plan.json"
PAIRS_FILE = "pairs.jsonl"
RECORD_FILE = "record.json"
ADAPTER_FILE = "adapter.gguf"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SAMPLE_COUNT = 3


@dataclass(frozen=True)
class PairsSource:
    """Where the pairs came from, and a hash of exactly that."""

    label: str
    """A path, "persona NAME" or "replies marked good"."""
    pairs: tuple[Pair, ...]
    sha256: str
    path: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> PairsSource:
        p = Path(path).expanduser()
        pairs = read_pairs(p)
        return cls(str(p), tuple(pairs), sha256_file(p), str(p.resolve()))

    @classmethod
    def from_pairs(cls, label: str, pairs: Sequence[Pair]) -> PairsSource:
        if not pairs:
            raise TuneError(_("{label}: no pairs", label=label))
        return cls(label, tuple(pairs), sha256_text(pairs_jsonl(pairs)))

    def where(self, index: int) -> str:
        line = self.pairs[index].line
        return f"{self.label} line {line}" if line else f"{self.label}, pair {index + 1}"


@dataclass(frozen=True)
class TuneSpec:
    name: str
    base_path: str
    base_name: str
    source: PairsSource
    params: TrainParams = field(default_factory=TrainParams)


@dataclass(frozen=True)
class TunePlan:
    spec: TuneSpec
    train: tuple[Pair, ...]
    holdout: tuple[Pair, ...]
    estimate: planning.Estimate
    architecture: str
    context: int


@dataclass(frozen=True)
class Sample:
    question: str
    expected: str
    base: str
    tuned: str


@dataclass(frozen=True)
class TuneResult:
    name: str
    folder: Path
    adapter_path: Path
    record_path: Path
    record: dict[str, Any]
    profile: Profile
    samples: tuple[Sample, ...]


def split(pairs: Sequence[Pair], params: TrainParams) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """(train, held out), the same for the same pairs and seed."""
    n_hold = planning.split_sizes(len(pairs), params.holdout)[1]
    order = list(range(len(pairs)))
    random.Random(params.seed).shuffle(order)
    held = sorted(order[:n_hold])
    return (tuple(p for i, p in enumerate(pairs) if i not in set(held)),
            tuple(pairs[i] for i in held))


class Tuner:
    """Runs tunes for one data folder; ``store`` is where the profile is registered."""

    def __init__(self, data_dir: Path, store: Store, *, log_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.store = store
        self.root = self.data_dir / TUNES_DIR
        self.log_dir = log_dir
        """Where the short measuring process writes its log (default: the cache folder)."""

    # -- names and folders ---------------------------------------------------------------

    def final_dir(self, name: str) -> Path:
        return self.root / name

    def partial_dir(self, name: str) -> Path:
        return self.root / f"{name}{PARTIAL_SUFFIX}"

    def check_name(self, name: str, *, resuming: bool = False) -> None:
        from tui.models.profiles import ProfileLibrary

        if not _NAME.match(name) or name.endswith(PARTIAL_SUFFIX):
            raise TuneError(_("bad name {name!r}: use letters, digits, '.', '_' and '-' (at "
                              "most 64), like 'ada-style'", name=name))
        if self.final_dir(name).exists():
            raise TuneError(_("there is already a tuned model called {name!r} ({final_dir}): "
                              "choose another --name", name=name, final_dir=self.final_dir(name)))
        if ProfileLibrary(self.store).find(name) is not None:
            raise TuneError(_("there is already a model profile called {name!r}: choose another "
                              "--name", name=name))
        if not resuming and self.partial_dir(name).exists():
            raise TuneError(_("a run called {name!r} was stopped before it finished: `lmdesk "
                              "tune --resume {name}` goes on from its last checkpoint, "
                              "--restart starts it over", name=name))

    def discard(self, name: str) -> None:
        """Remove a stopped run (``--restart``)."""
        partial = self.partial_dir(name)
        if partial.exists():
            shutil.rmtree(partial)

    def stopped_runs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name.removesuffix(PARTIAL_SUFFIX) for p in self.root.iterdir()
                      if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX))

    # -- planning: nothing is written --------------------------------------------------------

    def plan(self, spec: TuneSpec, *, resources: planning.Resources | None = None,
             resuming: bool = False, log_dir: Path | None = None) -> TunePlan:
        """Check everything a run needs; ``TuneError`` names the first problem."""
        planning.require_extra()
        planning.check_params(spec.params)
        self.check_name(spec.name, resuming=resuming)
        header = planning.read_base(spec.base_path)
        resources = resources or planning.Resources.current(self.data_dir)
        logs = log_dir or self.log_dir or Path(os.environ.get("LMDESK_CACHE_DIR")
                                                 or self.data_dir / ".cache")
        measured = measure(MeasureRequest(spec.base_path, spec.source.pairs), str(logs))
        context = min(header.context_length or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
        for i, n in enumerate(measured.tokens):
            if n > context:
                raise TuneError(_("{where}: {n:,} tokens in the chat template, longer than the "
                                  "context ({context:,} tokens): shorten or split that pair",
                                  where=spec.source.where(i), n=n, context=context))
        est = planning.estimate(header, list(measured.tokens), list(measured.response_tokens),
                                spec.params, resources)
        planning.check_fits(est, resources)
        train, holdout = split(spec.source.pairs, spec.params)
        return TunePlan(spec, train, holdout, est, header.architecture, context)

    # -- training --------------------------------------------------------------------------

    def start(self, plan: TunePlan, *, resume: bool = False) -> TuneProcess:
        """Write the run folder (if new) and start the training process."""
        from tui.config import ensure_private_dir

        folder = self.partial_dir(plan.spec.name)
        if resume:
            if not (folder / PLAN_FILE).is_file():
                raise TuneError(_("there is no stopped run called {name!r} to resume",
                                  name=plan.spec.name))
        else:
            ensure_private_dir(self.root)
            tmp = self.root / f".{plan.spec.name}.new"
            shutil.rmtree(tmp, ignore_errors=True)
            ensure_private_dir(tmp)
            (tmp / PAIRS_FILE).write_text(pairs_jsonl(plan.spec.source.pairs), encoding="utf-8")
            (tmp / PLAN_FILE).write_text(json.dumps(_plan_json(plan), indent=1) + "\n",
                                         encoding="utf-8")
            os.replace(tmp, folder)
        job = TuneProcess(
            TrainRequest(plan.spec.base_path, str(folder), plan.train, plan.holdout,
                         plan.spec.params, resume=resume),
            str(folder / LOG_NAME),
        )
        job.start()
        return job

    def resume_spec(self, name: str) -> TuneSpec:
        """The spec of a stopped run, from its folder."""
        folder = self.partial_dir(name)
        try:
            data = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
            pairs = read_pairs(folder / PAIRS_FILE)
            params = TrainParams(**data["params"])
            base = data["base"]
        except FileNotFoundError:
            known = ", ".join(self.stopped_runs()) or "none"
            raise TuneError(_("there is no stopped run called {name!r} (stopped runs: {known})",
                              name=name, known=known)
                            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TuneError(_("the stopped run {name!r} cannot be read ({exc}); --restart "
                              "starts it over", name=name, exc=exc)) from None
        st = _stat(base["path"])
        if st != (base["size"], base["mtime_ns"]):
            raise TuneError(_("the base model {path} changed since the run stopped: --restart "
                              "starts it over", path=base['path']))
        src = data["pairs"]
        source = PairsSource(src["label"], tuple(pairs), src["sha256"], src.get("path"))
        return TuneSpec(name, base["path"], base["name"], source, params)

    # -- the end: compare, record, register ------------------------------------------------

    def finish(self, plan: TunePlan, done: Finished, *,
               status: Callable[[str], None] | None = None) -> TuneResult:
        """Check the adapter in llama.cpp, write the record, move the run into place and
        register its profile."""
        from tui.models.profiles import ProfileLibrary

        spec = plan.spec
        folder = self.partial_dir(spec.name)
        final = self.final_dir(spec.name)
        say = status or (lambda _text: None)
        say(_("answering held-out questions with the base and the tuned model (llama.cpp)"))
        samples = compare_samples(spec.base_path, done.adapter_path, plan)
        if all(s.base == s.tuned for s in samples):
            raise TuneError(_("the adapter loads but changes none of the sample answers: "
                              "--restart with more --epochs or a higher --lr"))
        say(_("writing the record"))
        record = _record(plan, done, samples, final)
        (folder / RECORD_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False)
                                          + "\n", encoding="utf-8")
        for leftover in ("checkpoint.pt", ".checkpoint.pt.tmp"):
            (folder / leftover).unlink(missing_ok=True)
        os.replace(folder, final)
        try:
            profile = ProfileLibrary(self.store).create(
                spec.name, spec.base_path, model_name=spec.base_name,
                lora_path=str(final / ADAPTER_FILE),
                notes=f"LoRA tuned by `lmdesk tune` on {len(spec.source.pairs)} pairs from "
                      f"{spec.source.label}; record: {final / RECORD_FILE}",
            )
        except Exception:
            os.replace(final, folder)  # back to a stopped run: nothing half-registered
            raise
        return TuneResult(spec.name, final, final / ADAPTER_FILE, final / RECORD_FILE, record,
                          profile, samples)


def compare_samples(base_path: str, adapter_path: str, plan: TunePlan,
                    count: int = SAMPLE_COUNT) -> tuple[Sample, ...]:
    """Held-out questions answered by the base and by the tuned model, greedy, in llama.cpp."""
    from tui.engine.errors import EngineError
    from tui.engine.local import LocalEngine
    from tui.engine.protocol import LoadParams, SamplingParams

    chosen = list(plan.holdout[:count]) or list(plan.train[:count])
    sampling = SamplingParams(temperature=0.0, max_tokens=160, seed=0)
    answers: dict[str, list[str]] = {}
    for label, lora in (("base", None), ("tuned", adapter_path)):
        engine = LocalEngine(LoadParams(model_path=base_path, n_ctx=2048, lora_path=lora))
        try:
            engine.load()
            answers[label] = [_reply(engine, _messages(p), sampling) for p in chosen]
        except EngineError as exc:
            what = _("the tuned model (base + adapter)") if lora else _("the base model")
            raise TuneError(_("llama.cpp could not run {what}: {exc}",
                              what=what, exc=exc)) from None
        finally:
            engine.unload()
    return tuple(Sample(p.instruction, p.response, b, t)
                 for p, b, t in zip(chosen, answers["base"], answers["tuned"], strict=True))


def _reply(engine: Any, messages: list[ChatMessage], sampling: Any) -> str:
    from tui.engine.errors import EngineError
    from tui.engine.protocol import Done

    for event in engine.generate(messages, sampling):
        if isinstance(event, Done):
            if event.error:
                raise EngineError(event.error)
            return str(event.text).strip()
    raise EngineError(_("the model ended without a reply"))


def _messages(pair: Pair) -> list[ChatMessage]:
    out = [ChatMessage("system", pair.system)] if pair.system else []
    return [*out, ChatMessage("user", pair.instruction)]


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _plan_json(plan: TunePlan) -> dict[str, Any]:
    spec = plan.spec
    size, mtime = _stat(spec.base_path) or (0, 0)
    p = spec.params
    return {
        "name": spec.name,
        "base": {"path": spec.base_path, "name": spec.base_name, "size": size, "mtime_ns": mtime},
        "pairs": {"label": spec.source.label, "path": spec.source.path,
                  "sha256": spec.source.sha256},
        "params": {"epochs": p.epochs, "rank": p.rank, "alpha": p.alpha,
                   "learning_rate": p.learning_rate, "batch_size": p.batch_size,
                   "holdout": p.holdout, "seed": p.seed, "threads": p.threads},
        "started": time.time(),
    }


def _record(plan: TunePlan, done: Finished, samples: Sequence[Sample],
            final: Path) -> dict[str, Any]:
    from tui import __version__

    spec = plan.spec
    est = plan.estimate
    return {
        "name": spec.name,
        "created": time.time(),
        "lmdesk": __version__,
        "base": {"name": spec.base_name, "path": spec.base_path,
                 "sha256": sha256_file(spec.base_path), "architecture": plan.architecture,
                 "size": os.path.getsize(spec.base_path)},
        "pairs": {"source": spec.source.label, "path": spec.source.path,
                  "sha256": spec.source.sha256,
                  "copy": str(final / PAIRS_FILE),
                  "copy_sha256": sha256_text(pairs_jsonl(spec.source.pairs)),
                  "count": len(spec.source.pairs), "train": len(plan.train),
                  "holdout": len(plan.holdout), "tokens": est.tokens,
                  "response_tokens": est.response_tokens},
        "parameters": spec.params.to_dict(),
        "losses": {"train": [round(x, 5) for x in done.train_losses],
                   "holdout_before": done.holdout_before, "holdout_after": done.holdout_after,
                   "holdout_per_epoch": list(done.holdout_per_epoch)},
        "training": {"steps": done.steps, "seconds": round(done.train_seconds, 2),
                     "tokens": done.train_tokens, "tokens_per_s": round(done.tokens_per_s, 1),
                     "peak_rss_bytes": done.peak_rss_bytes,
                     "resumed_from_step": done.resumed_from,
                     "estimate": {"seconds": round(est.seconds, 1), "ram_bytes": est.ram_bytes}},
        "adapter": {"path": str(final / ADAPTER_FILE), "bytes": done.adapter_bytes,
                    "tensors": done.n_tensors,
                    "sha256": sha256_file(done.adapter_path), "format": "GGUF LoRA (llama.cpp)"},
        "samples": [{"question": s.question, "expected": s.expected, "base": s.base,
                     "tuned": s.tuned} for s in samples],
    }
