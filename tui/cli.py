"""The ``lmdesk`` command: the app (default), ask, bench.

Everything is built in ``main()``; importing this module does nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from tui import __version__
from tui.config import Paths, Settings, load_settings, resolve_paths
from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams, TextDelta
from tui.models.registry import ModelNotFound, ModelRef, resolve_model

if TYPE_CHECKING:
    from tui.store import Store


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="a GGUF path or a model name (default: smollm2-135m)")
    p.add_argument("--n-ctx", type=int, help="context window in tokens")
    p.add_argument("--threads", type=int, help="generation threads (default: physical cores)")
    p.add_argument("--gpu-layers", type=int, help="layers on the GPU (-1: all)")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repeat-penalty", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


# Commands whose options live beside their code. Those modules import what their command needs
# (numpy through the knowledge bases, the HTTP server...), so main() builds only the one asked
# for: the app and `ask` do not pay for the others at start-up.
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "templates": ("tui.prompting.cli", "add_templates_parser",
                  "list, show, import and export prompt templates"),
    "memory": ("tui.prompting.cli", "add_memory_parser",
               "facts and preferences the model remembers about you"),
    "doctor": ("tui.doctor.cli", "add_doctor_parser",
               "this machine, what it can run, the install's health, the network"),
    "kb": ("tui.kb.cli", "add_kb_parser",
           "knowledge bases: folders indexed for answers with sources"),
    "models": ("tui.models.cli", "add_models_parser",
               "list, describe, download and remove models"),
    "serve": ("tui.serve.cli", "add_serve_parser",
              "an OpenAI-compatible API for your local models"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) with full options for that one command alone."""
    parser = argparse.ArgumentParser(
        prog="lmdesk", description="A terminal workstation for local language models."
    )
    parser.add_argument("--version", action="version", version=f"lmdesk {__version__}")
    parser.add_argument("--data-dir", help="data folder (default: platform data dir)")
    parser.add_argument("--config-dir", help="config folder (default: platform config dir)")
    from tui.offline import add_offline_arguments

    add_offline_arguments(parser)
    sub = parser.add_subparsers(dest="command")

    app = sub.add_parser("app", help="the full-screen app (the default)")
    _add_load_options(app)

    ask = sub.add_parser("ask", help="answer one prompt, streamed to stdout")
    ask.add_argument("prompt", nargs="*", help="the prompt (read from stdin when absent)")
    ask.add_argument("-s", "--system", help="system prompt")
    ask.add_argument("--raw", action="store_true", help="plain completion: no chat template")
    ask.add_argument("--json", action="store_true", help="print one JSON object with the stats")
    ask.add_argument("-t", "--template", help="fill this prompt template (see `lmdesk templates`)")
    ask.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="a template variable"
    )
    ask.add_argument(
        "--kb", action="append", default=[], metavar="NAME",
        help="answer from this knowledge base (see `lmdesk kb`); repeatable",
    )
    _add_load_options(ask)
    _add_sampling_options(ask)

    bench = sub.add_parser("bench", help="benchmarks that print figures and ratios")
    bench.add_argument(
        "what", nargs="?", default="engine", choices=["engine", "ui", "store", "serve", "kb"]
    )
    bench.add_argument("--reps", type=int, default=6, help="repetitions (engine)")
    bench.add_argument("--tokens", type=int, default=128, help="tokens per reply (engine)")
    _add_load_options(bench)

    for name, (module, adder, summary) in _SUBCOMMANDS.items():
        if only is None or only == name:
            getattr(importlib.import_module(module), adder)(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


class CliError(Exception):
    """A failure to report on stderr with a non-zero exit."""


def _model(args: argparse.Namespace, settings: Settings) -> ModelRef:
    try:
        return resolve_model(args.model or settings.model, settings.model_dirs)
    except ModelNotFound as exc:
        raise CliError(str(exc)) from None


def load_params(args: argparse.Namespace, settings: Settings, model: ModelRef) -> LoadParams:
    return LoadParams(
        model_path=str(model.path),
        n_ctx=args.n_ctx if args.n_ctx is not None else settings.n_ctx,
        n_threads=args.threads if args.threads is not None else settings.n_threads,
        n_gpu_layers=args.gpu_layers if args.gpu_layers is not None else settings.n_gpu_layers,
    )


def sampling_params(args: argparse.Namespace, settings: Settings) -> SamplingParams:
    base = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_tokens)
    overrides = {
        name: getattr(args, name)
        for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
        if getattr(args, name) is not None
    }
    values = {**asdict(base), **overrides, "stop": tuple(args.stop), "seed": args.seed}
    return SamplingParams(**values)


def _read_prompt(args: argparse.Namespace, stdin: TextIO, paths: Paths) -> str:
    if args.template:
        return _template_prompt(args, stdin, paths)
    if args.prompt and args.prompt != ["-"]:
        return " ".join(args.prompt)
    if stdin.isatty() and args.prompt != ["-"]:
        raise CliError('no prompt: lmdesk ask "your question", or pipe text into it')
    text = stdin.read()
    if not text.strip():
        raise CliError("the prompt read from stdin is empty")
    return text


def _template_prompt(args: argparse.Namespace, stdin: TextIO, paths: Paths) -> str:
    """The filled template; text given as well (arguments or piped) follows it."""
    from tui.prompting.cli import render_for_ask
    from tui.prompting.templates import PromptingError

    with _open_store(paths, read_only=True) as store:
        try:
            prompt = render_for_ask(store, args.template, args.var)
        except PromptingError as exc:
            raise CliError(str(exc)) from None
    extra = " ".join(args.prompt) if args.prompt and args.prompt != ["-"] else ""
    if not extra and not stdin.isatty():
        extra = stdin.read()
    return f"{prompt}\n\n{extra.strip()}" if extra.strip() else prompt


def _open_store(paths: Paths, *, read_only: bool = False) -> Store:
    from tui.config import ensure_private_dir
    from tui.store import Store, StoreError

    try:
        return Store.open(ensure_private_dir(paths.data_dir), read_only=read_only)
    except StoreError as exc:
        raise CliError(f"cannot open the data folder {paths.data_dir}: {exc}") from None


def _with_knowledge(
    messages: list[ChatMessage], names: list[str], question: str, engine: Any, paths: Paths
) -> tuple[list[ChatMessage], tuple[Any, ...]]:
    """Put the best passages of the knowledge bases into the system message."""
    from tui.kb import KBError
    from tui.kb.prompt import kb_messages

    try:
        block, sources = kb_messages(paths, names, question, engine)
    except KBError as exc:
        raise CliError(str(exc)) from None
    if messages and messages[0].role == "system":
        system = ChatMessage("system", f"{messages[0].content}\n\n{block}")
        return [system, *messages[1:]], sources
    return [ChatMessage("system", block), *messages], sources


def cmd_ask(
    args: argparse.Namespace, settings: Settings, paths: Paths, out: TextIO, stdin: TextIO
) -> int:
    from tui.engine.local import LocalEngine

    prompt = _read_prompt(args, stdin, paths)
    model = _model(args, settings)
    sampling = sampling_params(args, settings)
    sampling.validate()
    system = args.system if args.system is not None else None
    messages = [ChatMessage("system", system)] if system else []
    messages.append(ChatMessage("user", prompt))
    engine = LocalEngine(load_params(args, settings, model))
    interrupted = False
    sources: tuple[Any, ...] = ()
    try:
        info = engine.load()
        if args.kb:
            messages, sources = _with_knowledge(messages, args.kb, prompt, engine, paths)
        raw = prompt if args.raw else None
        done: Done | None = None
        stream = engine.generate(messages, sampling, raw_prompt=raw)
        while True:
            try:
                event = next(stream)
            except StopIteration:
                break
            except KeyboardInterrupt:
                interrupted = True
                engine.cancel()
                continue
            if isinstance(event, Done):
                done = event
            elif isinstance(event, TextDelta) and not args.json:
                out.write(event.text)
                out.flush()
    finally:
        engine.unload()
    if done is None:
        raise CliError("the model ended without a reply")
    if args.json:
        record = {
            "model": model.name,
            "model_path": str(model.path),
            "base_model": info.is_base_model,
            "reply": done.text,
            "stats": asdict(done.stats),
            "sources": [
                {"n": s.n, "path": s.path, "start": s.start, "end": s.end, "label": s.label}
                for s in sources
            ],
            "error": done.error,
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        if not done.text.endswith("\n"):
            out.write("\n")
        if sources:
            out.write("\nSources:\n" + "".join(f"[{s.n}] {s.label}\n" for s in sources))
    out.flush()
    if done.error:
        raise CliError(done.error)
    return 130 if interrupted else 0


def cmd_bench(args: argparse.Namespace, settings: Settings, paths: Paths) -> int:
    if args.what == "engine":
        from tui.engine.bench import run_engine_bench

        model = _model(args, settings)
        run_engine_bench(
            load_params(args, settings, model), reps=args.reps, max_tokens=args.tokens
        )
    elif args.what == "serve":
        from tui.serve.bench import run_serve_bench

        run_serve_bench(load_params(args, settings, _model(args, settings)))
    elif args.what == "kb":
        from tui.kb.bench import run_kb_bench

        run_kb_bench()
    elif args.what == "ui":
        from tui.app.bench_ui import run_ui_bench

        run_ui_bench()
    else:
        from tui.store.bench import run_store_bench

        run_store_bench()
    return 0


def cmd_app(args: argparse.Namespace, settings: Settings, paths: Paths, notes: list[str]) -> int:
    from tui.app.main import run_app

    model = _model(args, settings)
    return run_app(settings, paths, load_params(args, settings, model), model.name, notes)


COMMANDS = ("app", "ask", "bench", "templates", "memory", "doctor", "kb", "models", "serve")
_GLOBAL_WITH_VALUE = ("--data-dir", "--config-dir")
_GLOBAL_FLAGS = ("--offline", "--online")


def _after_global_options(args: Sequence[str]) -> int | None:
    """Where the command word is (or would go); None for --help/--version."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif arg.startswith(tuple(f"{g}=" for g in _GLOBAL_WITH_VALUE)) or arg in _GLOBAL_FLAGS:
            i += 1
        elif arg in ("-h", "--help", "--version"):
            return None
        else:
            break
    return min(i, len(args))


def with_default_command(argv: Sequence[str]) -> list[str]:
    """``lmdesk [global options] [app options]`` means ``lmdesk ... app ...``."""
    args = list(argv)
    i = _after_global_options(args)
    if i is not None and (i >= len(args) or args[i] not in COMMANDS):
        args.insert(i, "app")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    words = with_default_command(sys.argv[1:] if argv is None else argv)
    at = _after_global_options(words)
    command = words[at] if at is not None and at < len(words) else None
    # --help lists every command: build them all then
    parser = build_parser(None if command is None else command)
    args = parser.parse_args(words)
    paths = resolve_paths(args.data_dir, args.config_dir)
    settings, notes = load_settings(paths)
    command = args.command
    from tui.offline import apply_offline_mode

    # before anything imports huggingface_hub: it reads its offline switch at import
    offline = apply_offline_mode(settings, args.offline, os.environ)
    notes.extend(offline.notes)
    # SIGPIPE keeps Python's default (ignored): a client that hangs up on `serve`, or on the
    # app while it serves, costs that connection a BrokenPipeError and nothing else. Output
    # piped into `head` is the one broken pipe that ends a command, quietly (below).
    try:
        if command == "ask":
            for note in notes:
                print(f"lmdesk: {note}", file=sys.stderr)
            return cmd_ask(args, settings, paths, sys.stdout, sys.stdin)
        if command == "bench":
            return cmd_bench(args, settings, paths)
        if command == "serve":
            from tui.serve.cli import cmd_serve

            return cmd_serve(args, settings, paths)
        if command == "models":
            from tui.models.cli import cmd_models

            return cmd_models(args, settings, paths)
        if command == "kb":
            from tui.kb.cli import cmd_kb

            return cmd_kb(args, settings, paths)
        if command == "doctor":
            from tui.doctor.cli import cmd_doctor

            return cmd_doctor(args, settings, paths, offline=offline)
        if command in ("templates", "memory"):
            from tui.prompting.cli import cmd_memory, cmd_templates

            with _open_store(paths, read_only=False) as store:
                if command == "templates":
                    return cmd_templates(args, store)
                return cmd_memory(args, store)
        return cmd_app(args, settings, paths, notes)
    except (CliError, EngineError) as exc:
        print(f"lmdesk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (`lmdesk ask ... | head`): stop quietly, and keep the interpreter's
        # final flush from failing again on the closed pipe
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
