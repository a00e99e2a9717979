"""``lmdesk ask``: one prompt, answered on the shared reply pipeline.

The same prompt a conversation in the app would send (memory, persona, knowledge bases, the
context budget: ``tui.session.request``), generated through a ``ModelSession``. The answer
streams to stdout; the reasoning of a thinking model goes to stderr, dimmed, unless
``--no-reasoning``; ``--json`` prints one object at the end instead.

``--chat ID`` adds the turn to a stored conversation instead (its branch shown, system prompt,
options and model; the prompt and the reply are saved: ``tui.session.stored_turn``), and
``--chat ID --continue`` extends its last reply where it stopped.

``tui/cli.py`` adds the parser with ``add_ask_parser`` and calls ``cmd_ask``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tui.display import printable
from tui.engine.errors import EngineError
from tui.engine.protocol import Done, TextDelta, ToolCall, ToolCallDelta
from tui.i18n import _
from tui.session.choice import ChoiceError, choice_for_name, read_chat_template, resolve
from tui.session.model_session import LoadedModel, ModelSession
from tui.session.params import (
    LoadOverrides,
    sampling_params,
    with_core_share,
    with_kv_states,
)
from tui.session.request import BuiltPrompt, for_prompt
from tui.session.turn import Decision, ToolUse, TurnOutcome, run_turn
from tui.store.parts import ToolResultPart
from tui.tools import Tool, ToolBox, ToolConfig
from tui.tools.knowledge import knowledge_search

if TYPE_CHECKING:
    from tui.config import Paths, Settings
    from tui.store import ConversationMeta, Store

DIM, RESET = "\x1b[2m", "\x1b[0m"
SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens",
                    "seed", "reasoning_budget")


class AskError(Exception):
    """One line for ``lmdesk: error: ...``."""


def add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model",
                   help=_("a GGUF path, a model name or a profile (default: smollm2-135m)"))
    p.add_argument("--n-ctx", type=int, help=_("context window in tokens"))
    p.add_argument("--threads", type=int, help=_("generation threads (default: physical cores)"))
    p.add_argument("--gpu-layers", type=int, help=_("layers on the GPU (-1: all)"))
    p.add_argument("--chat-template", metavar="FILE",
                   help=_("a Jinja chat template to use instead of the model's own"))


def add_rpc_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpc", action="append", default=[], metavar="HOST:PORT[,HOST:PORT]",
                   help=_("`lmdesk rpc-worker`s that take the model's layers (repeatable)"))


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repeat-penalty", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help=_("stop string (repeatable)"))
    p.add_argument("--reasoning-budget", type=int, default=None, metavar="N",
                   help=_("thinking tokens for reasoning models (0: do not think, -1: no limit)"))


def add_ask_parser(sub: Any) -> argparse.ArgumentParser:
    ask: argparse.ArgumentParser = sub.add_parser(
        "ask", help=_("answer one prompt, streamed to stdout"))
    ask.add_argument("prompt", nargs="*", help=_("the prompt (read from stdin when absent)"))
    ask.add_argument("-s", "--system",
                     help=_("system prompt (default: the system_prompt setting, as the app uses)"))
    ask.add_argument("--raw", action="store_true", help=_("plain completion: no chat template"))
    ask.add_argument("--no-prompt-lookup", action="store_true",
                     help=_("no drafts from the context (prompt lookup) for this reply"))
    ask.add_argument("--json", action="store_true", help=_("print one JSON object with the stats"))
    ask.add_argument("--schema", metavar="FILE.json",
                     help=_("constrain the answer to this JSON schema (the output parses)"))
    ask.add_argument("--json-output", action="store_true",
                     help=_("constrain the answer to a JSON object"))
    ask.add_argument("--no-reasoning", action="store_true",
                     help=_("do not print a thinking model's reasoning (stderr)"))
    ask.add_argument("--no-memory", action="store_true",
                     help=_("leave your memories out of the prompt"))
    ask.add_argument("-t", "--template", help=_("fill this prompt template (see `lmdesk "
                                                "templates`)"))
    ask.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help=_("a template variable")
    )
    ask.add_argument(
        "--kb", action="append", default=[], metavar="NAME",
        help=_("answer from this knowledge base (see `lmdesk kb`); repeatable"),
    )
    ask.add_argument("--tools", default="", metavar="NAMES",
                     help=_("tools the model may call: calc,time,files,kb,mcp:NAME (see `lmdesk "
                            "tools list`)"))
    ask.add_argument("--tool-choice", default="auto", metavar="NAME",
                     help=_("auto (default), required, none, or a tool the model must call"))
    ask.add_argument("--yes", action="store_true",
                     help=_("run every tool call without asking (for scripts)"))
    ask.add_argument(
        "--chat", metavar="ID",
        help=_("add this turn to a stored conversation (an id or its start, see `lmdesk chats "
               "list`): its history, system prompt and model; the prompt and reply are saved"))
    ask.add_argument(
        "--continue", dest="continue_reply", action="store_true",
        help=_("with --chat and no prompt: continue the conversation's last reply where it "
               "stopped (stopped, or cut at its token limit)"))
    add_load_options(ask)
    add_rpc_option(ask)
    add_sampling_options(ask)
    return ask


def load_overrides(args: argparse.Namespace) -> LoadOverrides:
    """The load options given on the command line (``--chat-template`` read from its file)."""
    template = None
    if getattr(args, "chat_template", None):
        try:
            template = read_chat_template(args.chat_template)
        except ChoiceError as exc:
            raise AskError(str(exc)) from None
    from tui.rpc.probe import parse_workers

    try:
        rpc = parse_workers(getattr(args, "rpc", None) or ())
    except ValueError as exc:
        raise AskError(_("--rpc: {exc}", exc=exc)) from None
    return LoadOverrides(n_ctx=args.n_ctx, n_threads=args.threads,
                         n_gpu_layers=args.gpu_layers, chat_template=template,
                         rpc_servers=rpc)


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name, None) for name in SAMPLING_OPTIONS}
    if getattr(args, "stop", None):
        values["stop"] = tuple(args.stop)
    if getattr(args, "schema", None):
        values["json_schema"] = read_schema(args.schema)
    elif getattr(args, "json_output", False):
        values["json_schema"] = "{}"  # any JSON object
    if getattr(args, "no_prompt_lookup", False):
        values["prompt_lookup"] = False
    return {k: v for k, v in values.items() if v is not None}


def read_schema(path: str) -> str:
    """``--schema FILE``: the JSON schema's text, checked to be a JSON object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AskError(_("cannot read the schema {path}: {value}",
                         path=path, value=getattr(exc, 'strerror', None) or exc)
                       ) from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise AskError(_("the schema {path} is not valid JSON: {exc}",
                         path=path, exc=exc)) from None
    if not isinstance(schema, dict):
        raise AskError(_("the schema {path} must be a JSON object (a JSON schema)", path=path))
    return json.dumps(schema)


# -- where the pieces go ---------------------------------------------------------------------


@dataclass
class TerminalSink:
    """Streams the answer to ``out`` and the reasoning (dimmed) to ``err``."""

    out: TextIO
    err: TextIO
    quiet: bool = False
    """--json: print nothing while it streams."""
    show_reasoning: bool = True
    broken = False
    """stdout went away (``| head``): the reply is stopped and the command ends quietly."""
    _in_reasoning: bool = False

    def planned(self, built: BuiltPrompt, model: LoadedModel) -> None:
        """What the prompt had to leave out, on stderr before the answer."""
        for note in built.notes:
            self.err.write(_("lmdesk: {note}\n", note=note))

    def reasoning(self, text: str, n_tokens: int) -> None:
        if self.quiet or not self.show_reasoning:
            return
        dim = self.err.isatty()
        if not self._in_reasoning and dim:
            self.err.write(DIM)
        self._in_reasoning = True
        self.err.write(printable(text) if dim else text)
        self.err.flush()

    def _end_reasoning(self) -> None:
        if self._in_reasoning:
            self.err.write(f"{RESET}\n" if self.err.isatty() else "\n")
            self.err.flush()
            self._in_reasoning = False

    def text(self, text: str, n_tokens: int) -> None:
        if self.quiet or self.broken:
            return
        try:
            self._end_reasoning()
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.broken = True

    def tool_call(self, delta: ToolCallDelta) -> None:
        """The call is shown once it has run (``tool_result``)."""

    def tool_result(self, step: int, call: ToolCall, result: ToolResultPart) -> None:
        if self.quiet:
            return
        self._end_reasoning()
        state = "denied" if not result.approved else ("failed" if result.error else "ran")
        line = f"[tool {state}: {call.name}({_short(call.arguments)}) -> {_short(result.content)}]"
        self.err.write(f"{DIM}{line}{RESET}\n" if self.err.isatty() else line + "\n")
        self.err.flush()

    def close(self) -> None:
        self._end_reasoning()


def _open_store(paths: Paths) -> Store | None:
    """The data folder, read-only (memories, personas, profiles); None if there is none."""
    from tui.store import Store, StoreError

    if not paths.data_dir.exists():
        return None
    try:
        return Store.open(paths.data_dir, read_only=True)
    except StoreError:
        return None


def cmd_ask(args: argparse.Namespace, settings: Settings, paths: Paths, prompt: str,
            out: TextIO, err: TextIO | None = None) -> int:
    """Answer ``prompt``. Raises ``AskError`` (one line) when it cannot."""
    from tui.engine.local import LocalEngine

    err = err if err is not None else sys.stderr
    _check_knowledge_bases(paths, args.kb)
    chat = getattr(args, "chat", None)
    store = _open_chat_store(paths) if chat else _open_store(paths)
    for notice in store.notices if store is not None else []:
        if "read-only" not in notice:
            err.write(_("lmdesk: {notice}\n", notice=notice))
    try:
        meta = _find_chat(store, chat, args) if chat and store is not None else None
        try:
            if meta is not None and not args.model and meta.options.model is not None:
                choice = meta.options.model  # the conversation's own model, as in the app
            else:
                choice = choice_for_name(args.model, settings=settings, store=store)
            resolved = resolve(choice, settings=settings, store=store,
                               overrides=load_overrides(args))
        except ChoiceError as exc:
            raise AskError(str(exc)) from None
        try:
            sampling, notes = sampling_params(
                settings, profile=resolved.profile,
                options=meta.options if meta is not None else None,
                overrides=sampling_overrides(args))
        except EngineError as exc:
            raise AskError(str(exc)) from None
        for note in [*resolved.notes, *notes]:
            err.write(_("lmdesk: {note}\n", note=note))
        log = paths.cache_dir / "worker.log"
        session = ModelSession(lambda params: LocalEngine(with_core_share(
            with_kv_states(params, paths.data_dir), paths.cache_dir), log_path=_log(log)))
        try:
            loaded = session.switch(resolved)
            if loaded is None:
                raise AskError(session.last_error)
            sink = TerminalSink(out, err, quiet=args.json, show_reasoning=not args.no_reasoning)
            saved: dict[str, Any] = {}
            if args.raw:
                outcome = _raw(session, loaded, prompt, sampling, sink)
                if sink.broken:
                    raise BrokenPipeError
            else:
                box, use = _tools(args, settings, paths, err)
                try:
                    if meta is not None and store is not None:
                        outcome = _chat_turn(session, store, meta, prompt, sampling, args,
                                             paths, sink, use, saved)
                    else:
                        request = for_prompt(
                            prompt, sampling, store=store,
                            # a new conversation in the app starts with the system prompt
                            system=settings.system_prompt if args.system is None
                            else args.system,
                            memory=not args.no_memory, kbs=args.kb, data_dir=paths.data_dir,
                        )
                        outcome = _interruptible(session, lambda cancel: run_turn(
                            session, request, sink, cancel, use), sink)
                finally:
                    if box is not None:
                        box.close()
                for note in outcome.notes:
                    err.write(_("lmdesk: {note}\n", note=note))
            if sink.broken:
                raise BrokenPipeError  # main() ends quietly
            sink.close()
        finally:
            session.close()
    finally:
        if store is not None:
            store.close()
    return _report(args, outcome, loaded, out, saved)


def _open_chat_store(paths: Paths) -> Store:
    """The data folder, writable (``--chat`` saves the turn); one line when it cannot be."""
    from tui.config import ensure_private_dir
    from tui.store import Store, StoreError

    try:
        store = Store.open(ensure_private_dir(paths.data_dir))
    except StoreError as exc:
        raise AskError(_("cannot open the data folder {data_dir}: {exc}",
                         data_dir=paths.data_dir, exc=exc)) from None
    if store.read_only:
        reason = store.read_only_reason
        store.close()
        raise AskError(_("{reason}: --chat cannot save the turn (ask without --chat, or close "
                         "the other lmdesk)", reason=reason))
    return store


def _find_chat(store: Store, ref: str, args: argparse.Namespace) -> ConversationMeta:
    from tui.store import StoreError

    if args.raw or args.system:
        raise AskError(_("--chat uses the conversation's own history and system prompt: leave "
                         "out --raw and --system"))
    try:
        return store.find_conversation(ref)
    except StoreError as exc:
        raise AskError(_("{exc} (see `lmdesk chats list`)", exc=exc)) from None


def _chat_turn(session: ModelSession, store: Store, meta: ConversationMeta, prompt: str,
               sampling: Any, args: argparse.Namespace, paths: Paths, sink: TerminalSink,
               use: ToolUse | None, saved: dict[str, Any]) -> TurnOutcome:
    """``--chat``: the turn on the stored conversation, saved as it streams (what was saved
    goes into ``saved``, for ``--json``)."""
    from tui.session.request import snapshot
    from tui.session.stored_turn import SavingSink, StoredTurnError, begin
    from tui.store import StoreError

    try:
        turn = begin(store, meta, prompt, continue_reply=args.continue_reply)
    except (StoredTurnError, StoreError) as exc:
        raise AskError(str(exc)) from None
    request = snapshot(store, meta, turn.history, sampling, data_dir=paths.data_dir,
                       n_ctx=args.n_ctx)
    request.kbs = [*request.kbs, *(k for k in args.kb if k not in request.kbs)]
    if turn.continuing is not None and not args.json:
        sink.text(turn.continuing.content, 0)  # the reply as it stands, then the rest
    saving = SavingSink(store, turn, sink)
    outcome = _interruptible(session, lambda cancel: run_turn(
        session, request, saving, cancel, use), sink)
    saved["conversation"] = meta.id
    if turn.continuing is None:
        saved["prompt_id"] = turn.history[-1].id
    try:
        reply = saving.finish(outcome)
    except (StoredTurnError, StoreError) as exc:
        sink.err.write(_("lmdesk: {exc}\n", exc=exc))
    else:
        if reply is not None:
            saved["reply_id"] = reply.id
    return outcome


def tool_config(settings: Settings) -> ToolConfig:
    return ToolConfig.from_settings(settings.tool_folders, settings.tools_always_allow,
                                    settings.mcp)


def _tools(args: argparse.Namespace, settings: Settings, paths: Paths,
           err: TextIO) -> tuple[ToolBox | None, ToolUse | None]:
    """The tools ``--tools`` names, and how a call is approved (``--yes``, or a question on
    the terminal; with neither, a call is denied and the model told so)."""
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    if not names:
        return None, None
    config = tool_config(settings)
    for problem in config.problems:
        err.write(_("lmdesk: config.toml: {problem}\n", problem=problem))
    box = ToolBox(config, kb_search=knowledge_search(paths.data_dir, args.kb)
                  if args.kb else None)
    tools, problems = box.resolve(names)
    for problem in problems:
        err.write(_("lmdesk: {problem}\n", problem=problem))
    if not tools:
        box.close()
        raise AskError(_("none of the tools asked for can be used: {problems}",
                         problems="; ".join(problems)))
    choice = args.tool_choice
    if choice not in ("auto", "none", "required") and choice not in {t.name for t in tools}:
        box.close()
        raise AskError(_("--tool-choice {choice!r} names no enabled tool (enabled: {join})",
                         choice=choice, join=', '.join(t.name for t in tools)))
    always = {t.name for t in tools} if args.yes else set(config.always_allow)
    return box, ToolUse(tools, _terminal_approver(err), always, choice)


def _terminal_approver(err: TextIO) -> Any:
    def approve(call: ToolCall, tool: Tool) -> Decision:
        try:
            tty = open("/dev/tty", "r+", encoding="utf-8")  # noqa: SIM115
        except OSError:
            err.write(_("lmdesk: {name} was not run: no terminal to ask (use --yes)\n",
                        name=call.name))
            return "deny"
        with tty:
            tty.write(_("Run {name}({short})? [y] once, [a] always, [N] no: ",
                        name=call.name, short=_short(call.arguments, 200)))
            tty.flush()
            answer = tty.readline().strip().lower()
        return "once" if answer in ("y", "yes") else ("always" if answer == "a" else "deny")

    return approve


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_knowledge_bases(paths: Paths, names: list[str]) -> None:
    """A knowledge base asked for by name must exist (in the app, one that went missing is
    only left out with a note)."""
    if not names:
        return
    from tui.kb import KBError, KBLibrary

    library = KBLibrary(paths.data_dir)
    for name in names:
        try:
            library.open(name)
        except KBError as exc:
            raise AskError(str(exc)) from None


def _log(path: Path) -> Path:
    from tui.config import ensure_private_dir

    ensure_private_dir(path.parent)
    return path


def _interruptible(session: ModelSession, run: Any, sink: TerminalSink) -> TurnOutcome:
    """Run the turn in a thread so ctrl+c (or a closed stdout) stops the reply."""
    cancel = threading.Event()
    result: list[TurnOutcome] = []
    thread = threading.Thread(target=lambda: result.append(run(cancel)), daemon=True,
                              name="lmdesk-ask")
    thread.start()
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
            session.cancel(cancel)
        if sink.broken:
            session.cancel(cancel)
    outcome = result[0] if result else TurnOutcome(error=_("the reply thread ended early"))
    outcome.cancelled = outcome.cancelled or interrupted
    return outcome


def _raw(session: ModelSession, loaded: LoadedModel, prompt: str, sampling: Any,
         sink: TerminalSink) -> TurnOutcome:
    """``--raw``: the prompt as it is, no chat template, no memory."""

    def run(cancel: threading.Event) -> TurnOutcome:
        outcome = TurnOutcome(model=loaded)
        for event in session.generate(loaded.engine, (), sampling, cancel, raw_prompt=prompt):
            if isinstance(event, TextDelta):
                sink.text(event.text, event.n_tokens)
            elif isinstance(event, Done):
                outcome.done = event
                outcome.error = event.error
        return outcome

    return _interruptible(session, run, sink)


def _report(args: argparse.Namespace, outcome: TurnOutcome, loaded: LoadedModel,
            out: TextIO, saved: dict[str, Any] | None = None) -> int:
    if outcome.context_error:
        raise AskError(outcome.context_error)
    done = outcome.done
    if done is None:
        raise AskError(outcome.error or _("the model ended without a reply"))
    sources = outcome.sources
    if args.json:
        record = {
            "model": loaded.name,
            "model_path": loaded.model.params.model_path if loaded.model.params else "",
            "base_model": loaded.info.is_base_model,
            "reply": done.text,
            "reasoning": done.reasoning,
            "stats": asdict(done.stats),
            "sources": sources,
            "tool_calls": [
                {"name": call.name, "arguments": call.arguments, "result": result.content,
                 "approved": result.approved, "error": result.error}
                for call, result in outcome.steps
            ],
            "error": done.error,
            **(saved or {}),
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        if not done.text.endswith("\n"):
            out.write("\n")
        if sources:
            out.write("\nSources:\n" + "".join(f"[{s['n']}] {s['label']}\n" for s in sources))
    out.flush()
    if done.error:
        raise AskError(done.error)
    return 130 if outcome.cancelled else 0
