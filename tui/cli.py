"""The ``lmdesk`` command: the app (default), ask, bench.

Everything is built in ``main()``; importing this module does nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from tui import __version__
from tui.config import Paths, Settings, load_settings, resolve_paths
from tui.engine.errors import EngineError
from tui.engine.protocol import LoadParams
from tui.i18n import LANGUAGES, N_, _, choose_language, set_language, translate_argparse
from tui.models.registry import ModelNotFound, ModelRef, resolve_model
from tui.session.ask import AskError, add_ask_parser, add_load_options, load_overrides
from tui.session.params import load_params as session_load_params

if TYPE_CHECKING:
    from tui.store import Store


# Commands whose options live beside their code. Those modules import what their command needs
# (numpy through the knowledge bases, the HTTP server...), so main() builds only the one asked
# for: the app and `ask` do not pay for the others at start-up.
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "templates": ("tui.prompting.cli", "add_templates_parser",
                  N_("list, show, import and export prompt templates")),
    "memory": ("tui.prompting.cli", "add_memory_parser",
               N_("facts and preferences the model remembers about you")),
    "chats": ("tui.store.cli", "add_chats_parser",
              N_("list, show, export, import and remove conversations")),
    "doctor": ("tui.doctor.cli", "add_doctor_parser",
               N_("this machine, what it can run, the install's health, the network")),
    "kb": ("tui.kb.cli", "add_kb_parser",
           N_("knowledge bases: folders indexed for answers with sources")),
    "models": ("tui.models.cli", "add_models_parser",
               N_("list, describe, download and remove models")),
    "serve": ("tui.serve.cli", "add_serve_parser",
              N_("an OpenAI-compatible API for your local models")),
    "rpc-worker": ("tui.rpc.cli", "add_rpc_parser",
                   N_("lend this machine's memory to a model running on another one")),
    "tools": ("tui.tools.cli", "add_tools_parser",
              N_("tools the model may call: built-in ones and MCP servers'")),
    "tune": ("tui.tune.cli", "add_tune_parser",
             N_("fine-tune a model on your own instruction/response pairs (LoRA)")),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) with full options for that one command alone."""
    parser = argparse.ArgumentParser(
        prog="lmdesk", description=_("A terminal workstation for local language models.")
    )
    parser.add_argument("--version", action="version", version=f"lmdesk {__version__}",
                        help=_("show program's version number and exit"))
    parser.add_argument("--lang", choices=LANGUAGES, metavar="{en,es}",
                        help=_("interface language (default: the language setting, then the "
                               "locale: LANG=es_AR.UTF-8 is Spanish)"))
    parser.add_argument("--data-dir", help=_("data folder (default: platform data dir)"))
    parser.add_argument("--config-dir", help=_("config folder (default: platform config dir)"))
    from tui.offline import add_offline_arguments

    add_offline_arguments(parser)
    sub = parser.add_subparsers(dest="command")

    app = sub.add_parser("app", help=_("the full-screen app (the default)"))
    add_load_options(app)

    add_ask_parser(sub)

    bench = sub.add_parser("bench", help=_("benchmarks that print figures and ratios"))
    bench.add_argument(
        "what", nargs="?", default="engine",
        choices=["engine", "grammar", "tools", "kv", "lookup", "ui", "app", "store", "serve",
                 "kb", "tune", "speed", "rpc"],
    )
    bench.add_argument("--reps", type=int, default=6, help=_("repetitions (engine, serve, lookup)"))
    bench.add_argument("--tokens", type=int, default=128,
                       help=_("tokens per reply (engine, serve)"))
    bench.add_argument("--embed-texts", type=int, default=1000,
                       help=_("short texts embedded for the embeddings rate (engine; 0: skip)"))
    bench.add_argument("--against", metavar="URL",
                       help=_("serve: compare with this OpenAI-compatible server (same model)"))
    bench.add_argument("--against-model", metavar="NAME",
                       help=_("serve --against: the model name there (default: its first)"))
    bench.add_argument("--against-key", metavar="KEY", help=_("serve --against: its API key"))
    add_load_options(bench)

    for name, (module, adder, summary) in _SUBCOMMANDS.items():
        if only is None or only == name:
            getattr(importlib.import_module(module), adder)(sub)
        else:
            sub.add_parser(name, help=_(summary))
    return parser


class CliError(Exception):
    """A failure to report on stderr with a non-zero exit."""


def _model(args: argparse.Namespace, settings: Settings) -> ModelRef:
    try:
        return resolve_model(args.model or settings.model, settings.model_dirs)
    except ModelNotFound as exc:
        raise CliError(str(exc)) from None


def load_params(args: argparse.Namespace, settings: Settings, model: ModelRef) -> LoadParams:
    try:
        overrides = load_overrides(args)
    except AskError as exc:
        raise CliError(str(exc)) from None
    return session_load_params(settings, str(model.path), overrides=overrides)


def _read_stdin(stdin: TextIO) -> str:
    """stdin as text: UTF-8, any byte that is not replaced by U+FFFD (with one note), never
    kept as the lone surrogates that no model, file or terminal can take."""
    buffer = getattr(stdin, "buffer", None)
    raw = buffer.read() if buffer is not None else stdin.read()
    return _as_text(raw, _("the prompt read from stdin"))


def _as_text(value: str | bytes, what: str) -> str:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text and (isinstance(value, bytes) or "\ufffd" not in value):
        print(_("lmdesk: {what} is not valid UTF-8: the bytes that are not were replaced by �",
                what=what), file=sys.stderr)
    return text


def _read_prompt(args: argparse.Namespace, stdin: TextIO, paths: Paths) -> str:
    if args.template:
        return _template_prompt(args, stdin, paths)
    if args.prompt and args.prompt != ["-"]:
        return _as_text(" ".join(args.prompt), _("the prompt"))
    if stdin.isatty() and args.prompt != ["-"]:
        raise CliError(_('no prompt: lmdesk ask "your question", or pipe text into it'))
    text = _read_stdin(stdin)
    if not text.strip():
        raise CliError(_("the prompt read from stdin is empty"))
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
    extra = _as_text(" ".join(args.prompt), _("the prompt")) if args.prompt and \
        args.prompt != ["-"] else ""
    if not extra and not stdin.isatty():
        extra = _read_stdin(stdin)
    return f"{prompt}\n\n{extra.strip()}" if extra.strip() else prompt


def _open_store(paths: Paths, *, read_only: bool = False) -> Store:
    from tui.config import ensure_private_dir
    from tui.store import Store, StoreError

    try:
        return Store.open(ensure_private_dir(paths.data_dir), read_only=read_only)
    except StoreError as exc:
        raise CliError(_("cannot open the data folder {data_dir}: {exc}",
                         data_dir=paths.data_dir, exc=exc)) from None


def _say_notices(store: Store, lines: Sequence[str], *, writing: bool) -> None:
    for notice in lines:
        if not (writing and store.read_only and notice == store.read_only_notice):
            print(_("lmdesk: {notice}", notice=notice), file=sys.stderr)


def _store_command(command: str, args: argparse.Namespace, paths: Paths) -> int:
    """``templates``, ``memory`` and ``chats``: on the store, telling in one line each what it
    had to set aside, restore or rebuild (also what it meets while the command runs)."""
    from tui.prompting.cli import cmd_memory, cmd_templates
    from tui.store.cli import ChatsError, cmd_chats

    action = getattr(args, f"{command}_command", None) or "list"
    writing = action in _WRITES[command]
    with _open_store(paths, read_only=False) as store:
        told = len(store.notices)
        _say_notices(store, store.notices, writing=writing)
        try:
            if command == "templates":
                return cmd_templates(args, store)
            if command == "memory":
                return cmd_memory(args, store)
            try:
                return cmd_chats(args, store)
            except ChatsError as exc:
                raise CliError(str(exc)) from None
        finally:
            _say_notices(store, store.notices[told:], writing=writing)


def cmd_ask(
    args: argparse.Namespace, settings: Settings, paths: Paths, out: TextIO, stdin: TextIO
) -> int:
    from tui.display import for_terminal
    from tui.session.ask import cmd_ask as ask

    if args.continue_reply:
        if not args.chat:
            raise CliError(_("--continue goes with --chat ID: the conversation whose last reply "
                             "to continue"))
        if args.prompt or args.template:
            raise CliError(_("--continue continues the last reply: give no prompt"))
        prompt = ""
    else:
        prompt = _read_prompt(args, stdin, paths)
    try:
        # what the model writes is shown, not obeyed, by the terminal (a pipe gets it as is)
        return ask(args, settings, paths, prompt, for_terminal(out))
    except AskError as exc:
        raise CliError(str(exc)) from None


def cmd_bench(args: argparse.Namespace, settings: Settings, paths: Paths) -> int:
    if args.what == "engine":
        from tui.engine.bench import run_engine_bench
        from tui.models.calibration import record_bench

        model = _model(args, settings)
        params = load_params(args, settings, model)
        results = run_engine_bench(params, reps=args.reps, max_tokens=args.tokens,
                                   embed_texts=args.embed_texts)
        # a bench run is a measured run of this model here: it calibrates the predictions
        record_bench(paths.data_dir, params.model_path, results.get("engine_gen_tps", 0.0),
                     n_threads=params.n_threads, n_gpu_layers=params.n_gpu_layers or 0,
                     tokens=args.tokens)
    elif args.what == "grammar":
        from tui.engine.bench_grammar import run_grammar_bench

        run_grammar_bench(load_params(args, settings, _model(args, settings)),
                          reps=args.reps, max_tokens=args.tokens)
    elif args.what == "tools":
        from tui.session.bench_tools import run_tools_bench

        run_tools_bench(load_params(args, settings, _model(args, settings)), reps=args.reps)
    elif args.what == "kv":
        from tui.engine.bench_kv import run_kv_bench

        run_kv_bench(load_params(args, settings, _model(args, settings)),
                     reps=min(args.reps, 3), tokens=args.tokens if args.tokens != 128 else 4000)
    elif args.what == "lookup":
        from tui.engine.bench_lookup import run_lookup_bench

        run_lookup_bench(load_params(args, settings, _model(args, settings)),
                         reps=args.reps, max_tokens=args.tokens if args.tokens != 128 else 600)
    elif args.what == "speed":
        from tui.models.bench import run_speed_bench

        run_speed_bench(paths.data_dir, runs=min(args.reps, 6), tokens=min(args.tokens, 64))
    elif args.what == "rpc":
        from tui.rpc.bench import run_rpc_bench

        run_rpc_bench(load_params(args, settings, _model(args, settings)),
                      reps=min(args.reps, 3), max_tokens=min(args.tokens, 64))
    elif args.what == "serve" and args.against:
        from tui.serve.bench_against import AgainstError, run_against_bench

        try:
            run_against_bench(load_params(args, settings, _model(args, settings)),
                              args.against, model=args.against_model,
                              api_key=args.against_key, reps=args.reps,
                              max_tokens=args.tokens)
        except AgainstError as exc:
            raise CliError(str(exc)) from None
    elif args.what == "serve":
        from tui.serve.bench import run_serve_bench

        run_serve_bench(load_params(args, settings, _model(args, settings)), reps=args.reps,
                        max_tokens=args.tokens)
    elif args.what == "tune":
        from tui.tune.bench import run_tune_bench

        return run_tune_bench(_model(args, settings).path)
    elif args.what == "kb":
        from tui.kb.bench import run_kb_bench

        run_kb_bench()
    elif args.what == "ui":
        from tui.app.bench_ui import run_ui_bench

        run_ui_bench()
    elif args.what == "app":
        from tui.app.bench_app import run_app_bench

        try:
            run_app_bench(reps=args.reps if args.reps != 6 else 3,
                          max_tokens=args.tokens if args.tokens != 128 else 400)
        except RuntimeError as exc:  # the app or `lmdesk ask` would not run: one line
            raise CliError(str(exc)) from None
    else:
        from tui.store.bench import run_store_bench

        run_store_bench()
    return 0


def cmd_app(args: argparse.Namespace, settings: Settings, paths: Paths, notes: list[str]) -> int:
    from tui.app.main import run_app

    model = _model(args, settings)
    return run_app(settings, paths, load_params(args, settings, model), model.name, notes)


COMMANDS = ("app", "ask", "bench", *_SUBCOMMANDS)
_WRITES = {"templates": {"import", "rm", "copy"}, "memory": {"add", "rm", "enable", "disable"},
           "chats": {"import", "rm"}}
"""Store commands that change the data folder: they refuse in one line when it is read-only
(so the read-only notice is not said as well)."""
_GLOBAL_WITH_VALUE = ("--data-dir", "--config-dir", "--lang")
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


def _global_parser() -> argparse.ArgumentParser:
    """Only the options that say where the settings are and which language to speak, read
    before the whole parser is built (its help is written in that language)."""
    early = argparse.ArgumentParser(add_help=False)
    for option in _GLOBAL_WITH_VALUE:
        early.add_argument(option)
    return early


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
    # the language first: --help and argparse's own errors are said in it
    early, _rest = _global_parser().parse_known_args(words[:at] if at is not None else words)
    paths = resolve_paths(early.data_dir, early.config_dir)
    settings, notes = load_settings(paths)
    set_language(choose_language(early.lang, settings.language, os.environ))
    translate_argparse()
    if notes:  # said again, now in the chosen language
        settings, notes = load_settings(paths)
    # --help lists every command: build them all then
    parser = build_parser(None if command is None else command)
    args = parser.parse_args(words)
    if (args.data_dir, args.config_dir) != (early.data_dir, early.config_dir):
        paths = resolve_paths(args.data_dir, args.config_dir)
        settings, notes = load_settings(paths)
    command = args.command
    from tui.offline import OfflineError, apply_offline_mode

    # before anything imports huggingface_hub: it reads its offline switch at import
    offline = apply_offline_mode(settings, args.offline, os.environ)
    notes.extend(offline.notes)
    # SIGPIPE keeps Python's default (ignored): a client that hangs up on `serve`, or on the
    # app while it serves, costs that connection a BrokenPipeError and nothing else. Output
    # piped into `head` is the one broken pipe that ends a command, quietly (below).
    try:
        if command == "ask":
            for note in notes:
                print(_("lmdesk: {note}", note=note), file=sys.stderr)
            return cmd_ask(args, settings, paths, sys.stdout, sys.stdin)
        if command == "bench":
            return cmd_bench(args, settings, paths)
        if command == "serve":
            from tui.serve.cli import cmd_serve

            return cmd_serve(args, settings, paths)
        if command == "tools":
            from tui.session.ask import tool_config
            from tui.tools.cli import cmd_tools

            if getattr(args, "tools_command", None) != "list":
                raise CliError(_("usage: lmdesk tools list [--json]"))
            return cmd_tools(args, tool_config(settings), sys.stdout)
        if command == "rpc-worker":
            from tui.rpc.cli import RpcError, cmd_rpc_worker

            try:
                return cmd_rpc_worker(args)
            except RpcError as exc:
                raise CliError(str(exc)) from None
        if command == "models":
            from tui.models.cli import cmd_models

            return cmd_models(args, settings, paths)
        if command == "tune":
            from tui.tune.cli import cmd_tune

            return cmd_tune(args, settings, paths)
        if command == "kb":
            from tui.kb.cli import cmd_kb

            return cmd_kb(args, settings, paths)
        if command == "doctor":
            from tui.doctor.cli import cmd_doctor

            return cmd_doctor(args, settings, paths, offline=offline)
        if command in ("templates", "memory", "chats"):
            return _store_command(command, args, paths)
        return cmd_app(args, settings, paths, notes)
    except (CliError, EngineError, OfflineError) as exc:
        print(_("lmdesk: error: {exc}", exc=exc), file=sys.stderr)
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
