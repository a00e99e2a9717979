"""``lmdesk tune``: fine-tune a model on instruction/response pairs, from the command line.

Wiring in ``tui/cli.py``: an entry in ``_SUBCOMMANDS``, "tune" in ``COMMANDS`` and
``return cmd_tune(args, settings, paths)`` in ``main``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from typing import TYPE_CHECKING, Any, TextIO

from tui.config import Paths, Settings
from tui.i18n import _
from tui.tune.errors import TuneError
from tui.tune.protocol import (
    Cancelled,
    Evaluated,
    Failed,
    Finished,
    Progress,
    Stage,
    TrainParams,
)

if TYPE_CHECKING:
    from tui.store import Store
    from tui.tune.run import PairsSource, TunePlan, TuneResult

_DEFAULTS = TrainParams()


def add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "tune", help=_("fine-tune a model on your own instruction/response pairs (LoRA)"),
        description=_("Train a LoRA adapter on instruction/response pairs, offline on the CPU, "
                      "and register base model + adapter as a model profile. Needs the optional "
                      "training packages: pip install 'lmdesk[tune]'."),
    )
    p.add_argument("--base", metavar="MODEL", help=_("the base model: a name or a GGUF path "
                                                     "(default: the configured model)"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pairs", metavar="FILE", help=_("a JSONL or CSV file of pairs "
                                                       "(instruction/response fields or columns)"))
    src.add_argument("--persona", metavar="ID", help=_("the example pairs of this persona"))
    src.add_argument("--marked", action="store_true",
                     help=_("the replies you marked good in the app, with their questions"))
    p.add_argument("--name", help=_("the tuned model's name (its profile's nickname)"))
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs,
                   help=_("passes over the pairs ({epochs})", epochs=_DEFAULTS.epochs))
    p.add_argument("--rank", type=int, default=_DEFAULTS.rank,
                   help=_("LoRA rank ({rank})", rank=_DEFAULTS.rank))
    p.add_argument("--alpha", type=float, default=None, help=_("LoRA alpha (twice the rank)"))
    p.add_argument("--lr", type=float, default=_DEFAULTS.learning_rate,
                   help=_("learning rate ({learning_rate:g})",
                          learning_rate=_DEFAULTS.learning_rate))
    p.add_argument("--batch", type=int, default=_DEFAULTS.batch_size,
                   help=_("pairs per step ({batch_size})", batch_size=_DEFAULTS.batch_size))
    p.add_argument("--holdout", type=float, default=_DEFAULTS.holdout,
                   help=_("share of pairs kept out to measure the loss ({holdout:g})",
                          holdout=_DEFAULTS.holdout))
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--threads", type=int, default=None, help=_("training threads (default: "
                                                               "physical cores)"))
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", metavar="NAME",
                       help=_("go on with a stopped run from its last checkpoint"))
    again.add_argument("--restart", action="store_true",
                       help=_("discard a stopped run of the same --name and start over"))
    p.add_argument("--plan", action="store_true",
                   help=_("only check the input and print the estimate; train nothing"))
    p.add_argument("--json", action="store_true", help=_("print one JSON object at the end"))
    return p


def cmd_tune(args: argparse.Namespace, settings: Settings, paths: Paths) -> int:
    out, err = sys.stdout, sys.stderr
    try:
        from tui.tune.plan import require_extra

        require_extra()
        store = _open_store(paths)
        with store:
            return _run(args, settings, paths, store, out, err)
    except TuneError as exc:
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(exc)}) + "\n")
        print(_("lmdesk: error: {exc}", exc=exc), file=err)
        return 1


def _open_store(paths: Paths) -> Store:
    from tui.store import Store, StoreError

    try:
        store = Store.open(paths.data_dir)
    except StoreError as exc:
        raise TuneError(_("cannot open the data folder {data_dir}: {exc}",
                          data_dir=paths.data_dir, exc=exc)) from None
    if store.read_only:
        store.close()
        raise TuneError(_("the data folder {data_dir} is in use by another lmdesk (the app?): "
                          "close it, or tune from the app's Tune screen", data_dir=paths.data_dir))
    return store


def _source(args: argparse.Namespace, store: Store) -> PairsSource:
    from tui.tune.marks import GoodReplies
    from tui.tune.run import PairsSource

    if args.pairs:
        return PairsSource.from_file(args.pairs)
    if args.persona:
        return persona_source(store, args.persona)
    if args.marked:
        return PairsSource.from_pairs(_("replies marked good"), GoodReplies(store).pairs())
    raise TuneError(_("say what to train on: --pairs FILE, --persona ID or --marked"))


def persona_source(store: Store, persona_id: str) -> PairsSource:
    from tui.prompting.personas import PersonaLibrary
    from tui.prompting.templates import PromptingError
    from tui.tune.pairs import Pair
    from tui.tune.run import PairsSource

    try:
        persona = PersonaLibrary(store).get(persona_id)
    except PromptingError as exc:
        raise TuneError(str(exc)) from None
    system = persona.system_block() or None
    pairs = [Pair(e.instruction, e.response, system) for e in persona.examples]
    return PairsSource.from_pairs(f"persona {persona.id}", pairs)


def _spec(args: argparse.Namespace, settings: Settings, store: Store) -> Any:
    from tui.models.registry import ModelNotFound, resolve_model
    from tui.tune.run import TuneSpec

    if not args.name:
        raise TuneError(_("give the tuned model a --name, like --name ada-style"))
    try:
        base = resolve_model(args.base or settings.model, settings.model_dirs)
    except ModelNotFound as exc:
        raise TuneError(str(exc)) from None
    params = TrainParams(epochs=args.epochs, rank=args.rank, alpha=args.alpha,
                         learning_rate=args.lr, batch_size=args.batch, holdout=args.holdout,
                         seed=args.seed, threads=args.threads)
    return TuneSpec(args.name, str(base.path), base.name, _source(args, store), params)


def _run(args: argparse.Namespace, settings: Settings, paths: Paths, store: Store,
         out: TextIO, err: TextIO) -> int:
    from tui.tune.run import Tuner

    tuner = Tuner(paths.data_dir, store, log_dir=paths.cache_dir)
    resume = bool(args.resume)
    if resume:
        spec = tuner.resume_spec(args.resume)
    else:
        spec = _spec(args, settings, store)
        if args.restart:
            tuner.check_name(spec.name, resuming=True)
            tuner.discard(spec.name)
    plan = tuner.plan(spec, resuming=resume)
    est = plan.estimate
    if not args.json:
        out.write(_("{name}: {base_name} + LoRA rank {rank} on {label}\n  {summary}\n",
                    name=spec.name, base_name=spec.base_name, rank=spec.params.rank,
                    label=spec.source.label, summary=est.summary()))
        out.flush()
    if args.plan:
        if args.json:
            out.write(json.dumps({"plan": est.__dict__}) + "\n")
        return 0
    job = tuner.start(plan, resume=resume)
    done = _follow(job, err, quiet=args.json)
    if isinstance(done, Cancelled):
        print(_("lmdesk: stopped after step {step}: `lmdesk tune --resume {name}` goes on from "
                "there", step=done.step, name=spec.name), file=err)
        return 130
    if isinstance(done, Failed):
        raise TuneError(done.message)
    assert isinstance(done, Finished)
    result = tuner.finish(plan, done, status=None if args.json else _status(err))
    if args.json:
        out.write(json.dumps({**result.record, "profile": result.profile.id},
                             ensure_ascii=False) + "\n")
    else:
        _report(result, plan, out)
    return 0


def _status(err: TextIO) -> Any:
    def say(text: str) -> None:
        err.write(f"  {text}\n")
        err.flush()
    return say


def _follow(job: Any, err: TextIO, *, quiet: bool) -> Any:
    """Show the events; Ctrl-C asks the process for a checkpoint and a stop."""
    tty = err.isatty()
    events = job.events()
    last: Any = None
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except KeyboardInterrupt:
            job.cancel()
            if not quiet:
                err.write(_("\n  stopping after this step (writing a checkpoint)...\n"))
            continue
        last = event
        if quiet:
            continue
        if isinstance(event, Stage):
            err.write(f"  {event.text}\n")
        elif isinstance(event, Progress):
            line = (_("  step {step}/{total_steps}  epoch {epoch}  loss {loss:.3f}  "
                      "{tokens_per_s:,.0f} tok/s  ETA {eta}",
                      step=event.step, total_steps=event.total_steps, epoch=event.epoch,
                      loss=event.loss, tokens_per_s=event.tokens_per_s, eta=_eta(event.eta_s)))
            err.write(f"\r{line:<78}" if tty else line + "\n")
            if tty and event.step == event.total_steps:
                err.write("\n")
        elif isinstance(event, Evaluated):
            end = "\n" if tty and event.step else ""
            err.write(_("{end}  held-out loss {holdout_loss:.3f} after step {step}\n",
                        end=end, holdout_loss=event.holdout_loss, step=event.step))
        err.flush()
    return last


def _eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _report(result: TuneResult, plan: TunePlan, out: TextIO) -> None:
    losses = result.record["losses"]
    training = result.record["training"]
    before, after = losses["holdout_before"], losses["holdout_after"]
    out.write(_("done in {seconds:.0f} s ({tokens_per_s:.0f} tok/s, peak {value:.0f} MiB)\n",
                seconds=training['seconds'], tokens_per_s=training['tokens_per_s'],
                value=training['peak_rss_bytes'] / 2**20))
    if before is not None and after is not None:
        out.write(_("held-out loss {before:.3f} -> {after:.3f}\n", before=before, after=after))
    width = shutil.get_terminal_size((100, 24)).columns
    col = max(30, (width - 3) // 2)
    for sample in result.samples:
        out.write(f"\nQ: {sample.question}\n")
        left = textwrap.wrap(sample.base, col) or [""]
        right = textwrap.wrap(sample.tuned, col) or [""]
        base, tuned = _("base"), _("tuned")
        out.write(f"{base:<{col}} | {tuned}\n")
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            out.write(f"{a:<{col}} | {b}\n")
    out.write(_("\nadapter {adapter_path} ({value:.1f} MiB)\nrecord  {record_path}\nprofile "
                "{nickname}: `lmdesk ask --model {nickname}`, the model switcher's profiles "
                "(p), or `lmdesk serve`\n",
                adapter_path=result.adapter_path, value=result.record['adapter']['bytes'] / 2**20,
                record_path=result.record_path, nickname=result.profile.nickname))
