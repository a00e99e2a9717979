"""Two models side by side: one prompt, two answers streaming in two panes with their figures.

Model A is the app's loaded model (its generations hold the app's generation lock); model B is
loaded here in a thread worker and unloaded when the screen closes. Both run together when B
fits in the memory left with A loaded (``estimate_fit``); otherwise one after the other, B
loaded after A has answered and unloaded at once.

The pair's result is kept in the open conversation: the prompt as a user message, then ONE
assistant message holding both answers under their model names, ``model`` "A vs B", and
``stats["compare"] = {"models": [A, B], "mode": ..., "results": [{model, text, figures...}]}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Select, Static

from tui.display import count
from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, Done, SamplingParams, TextDelta
from tui.i18n import N_, _
from tui.session.params import load_params

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

Mode = Literal["together", "one after the other"]
REFRESH_S = 0.1


@dataclasses.dataclass
class Side:
    """One model's answer, shared between its generation thread and the UI timer."""

    name: str
    parts: list[str] = dataclasses.field(default_factory=list)
    tokens: int = 0
    done: Done | None = None
    error: str = ""
    state: str = "waiting"
    started: float = 0.0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def text(self) -> str:
        with self.lock:
            return "".join(self.parts)

    def figures(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.done is not None:
            s = self.done.stats
            return (_("{count} · {generation_tokens_per_s:.1f} tok/s · ttft "
                      "{time_to_first_token_s:.2f} s · {stop_reason}",
                      count=count(s.generated_tokens, 'token'),
                      generation_tokens_per_s=s.generation_tokens_per_s,
                      time_to_first_token_s=s.time_to_first_token_s, stop_reason=s.stop_reason))
        if self.tokens and self.started:
            rate = self.tokens / max(time.perf_counter() - self.started, 1e-6)
            return f"{count(self.tokens, 'token')} · {rate:.1f} tok/s…"
        return self.state

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "text": self.text}
        if self.done is not None:
            out.update(dataclasses.asdict(self.done.stats))
        if self.error:
            out["error"] = self.error
        return out


def decide_mode(path_a: str, path_b: str, n_ctx: int | None,
                a_loaded: bool = True) -> tuple[Mode, str]:
    """Together when B (and A, if it is not loaded yet) fits in the RAM available now."""
    from tui.models.fit import Resources, estimate_fit

    try:
        res = Resources.current()
        need = estimate_fit(path_b, n_ctx=n_ctx, resources=res).ram_bytes
        if not a_loaded:
            need += estimate_fit(path_a, n_ctx=n_ctx, resources=res).ram_bytes
    except Exception as exc:
        return "one after the other", _("could not estimate their memory ({exc})", exc=exc)
    gib = 1024 ** 3
    if need <= res.ram_available:
        return "together", (_("both fit: {value:.1f} GiB needed, {value2:.1f} GiB available",
                              value=need / gib, value2=res.ram_available / gib))
    return "one after the other", (_("they do not fit together: {value:.1f} GiB needed, "
                                     "{value2:.1f} GiB available",
                                     value=need / gib, value2=res.ram_available / gib))


class CompareUpdate(Message):
    """Something changed that is not text (a model loaded, the mode was chosen)."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note


class CompareFinished(Message):
    def __init__(self, prompt: str, mode: Mode) -> None:
        super().__init__()
        self.prompt = prompt
        self.mode = mode


class ComparePane(Vertical):
    DEFAULT_CSS = """
    ComparePane {
        width: 1fr;
        height: 1fr;
        border: round $primary;
        border-title-color: $text-primary;
        padding: 0 1;
        & > VerticalScroll { height: 1fr; }
        & > .compare-figures { color: $text-muted; height: auto; }
    }
    """

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = label

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", classes="compare-text", markup=False)
        yield Static("", classes="compare-figures", markup=False)

    def show(self, side: Side) -> None:
        self.border_title = side.name
        self.query_one(".compare-text", Static).update(side.text)
        self.query_one(".compare-figures", Static).update(side.figures())


class CompareScreen(Screen[None]):
    """Send one prompt to two models."""

    DEFAULT_CSS = """
    CompareScreen {
        layout: vertical;
        & > #compare-top { height: auto; }
        & > #compare-top > Select { width: 40; }
        & > #compare-top > Input { width: 1fr; }
        & > #compare-note { color: $text-muted; height: auto; padding: 0 1; }
        & > #compare-panes { height: 1fr; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_close", N_("Stop / close"), id="compare.close"),
    ]

    def __init__(self, candidates: Sequence[tuple[str, str]] | None = None, *,
                 mode: Mode | None = None, conversation_id: str | None = None) -> None:
        """``candidates``: (name, path) of the models B may be (default: packaged and
        installed ones); ``mode`` forces together / one after the other (tests)."""
        super().__init__()
        self._candidates = list(candidates) if candidates is not None else None
        self.forced_mode = mode
        self.conversation_id = conversation_id
        self.sides: tuple[Side, Side] | None = None
        self.mode: Mode | None = None
        self.running = False
        self.saved_message_id: str | None = None
        self._cancel = threading.Event()
        self._engine_b: Engine | None = None
        self._engine_b_path = ""

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def model_b_path(self) -> str:
        """The file of the model B this view has loaded beside the app's models ("" if none)."""
        return self._engine_b_path if self._engine_b is not None else ""

    def candidates(self) -> list[tuple[str, str]]:
        if self._candidates is not None:
            return self._candidates
        from tui.models.registry import packaged_models

        try:
            return [(ref.name, str(ref.path)) for ref in packaged_models()]
        except Exception:
            return []

    def compose(self) -> ComposeResult:
        options = [(name, path) for name, path in self.candidates()
                   if Path(path) != Path(self.lmdesk.model_path)] or self.candidates()
        with Horizontal(id="compare-top"):
            yield Select(options, prompt=_("model B"), id="compare-model",
                         value=options[0][1] if options else Select.BLANK)
            yield Input(placeholder=_("a prompt for both models, then enter"), id="compare-prompt")
        yield Static(_("A: {model_name} (loaded)   B: choose a model, type a prompt",
                       model_name=self.lmdesk.model_name),
                     id="compare-note", markup=False)
        with Horizontal(id="compare-panes"):
            yield ComparePane(self.lmdesk.model_name, id="pane-a")
            yield ComparePane("model B", id="pane-b")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-prompt", Input).focus()
        self.set_interval(REFRESH_S, self._refresh)

    def _note(self, text: str) -> None:
        self.query_one("#compare-note", Static).update(text)

    @property
    def note_text(self) -> str:
        return str(self.query_one("#compare-note", Static).content)

    def _refresh(self) -> None:
        if self.sides is not None:
            self.query_one("#pane-a", ComparePane).show(self.sides[0])
            self.query_one("#pane-b", ComparePane).show(self.sides[1])

    # -- running -------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.start(event.value.strip())

    def start(self, prompt: str, model_b: tuple[str, str] | None = None) -> None:
        if self.running:
            self.lmdesk.notify(_("Both models are still answering (esc stops them)."))
            return
        if not prompt:
            return
        if model_b is None:
            select = self.query_one("#compare-model", Select)
            path = select.value
            if not isinstance(path, str):
                self.lmdesk.notify(_("Choose model B first."), severity="warning")
                return
            name = next((n for n, p in self.candidates() if p == path), Path(path).stem)
            model_b = (name, path)
        self.sides = (Side(self.lmdesk.model_name), Side(model_b[0]))
        self.running = True
        self._cancel = threading.Event()
        self._note(_("A: {model_name}   B: {value}   choosing how to run them…",
                     model_name=self.lmdesk.model_name, value=model_b[0]))
        self._run(prompt, model_b[1], self._cancel)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _run(self, prompt: str, path_b: str, cancel: threading.Event) -> None:
        assert self.sides is not None
        side_a, side_b = self.sides
        app = self.lmdesk
        if self.forced_mode is not None:
            mode, why = self.forced_mode, _("as asked")
        else:
            current = app.current
            path_a = current.model.params.model_path if current and current.model.params else ""
            mode, why = decide_mode(path_a, path_b, app.settings.n_ctx)
        self.post_message(CompareUpdate(
            _("Running together: {why}.", why=why) if mode == "together"
            else _("Running one after the other: {why}.", why=why)))
        messages = (ChatMessage("user", prompt),)
        sampling = SamplingParams(temperature=app.settings.temperature,
                                  max_tokens=app.settings.max_tokens)

        def run_a() -> None:
            try:
                loaded = app.session.wait_ready(cancel)
            except EngineError as exc:
                side_a.error = str(exc)
                return
            if loaded is None:
                side_a.error = "stopped"
                return
            with app.session.generation(cancel) as got:
                if not got:
                    side_a.error = "stopped"
                    return
                self._generate(loaded.engine, side_a, messages, sampling, cancel)

        def run_b() -> None:
            engine = self._load_b(path_b, side_b)
            if engine is None:
                return
            try:
                self._generate(engine, side_b, messages, sampling, cancel)
            finally:
                if mode == "one after the other":
                    self._unload_b()

        if mode == "together":
            thread = threading.Thread(target=run_a, name="lmdesk-compare-a", daemon=True)
            thread.start()
            run_b()
            thread.join()
        else:
            run_a()
            if cancel.is_set():
                side_b.error = "stopped"
            else:
                run_b()
        if not self.is_attached:  # closed while it ran: do not keep model B loaded
            self._unload_b()
        self.post_message(CompareFinished(prompt, mode))

    def _load_b(self, path: str, side: Side) -> Engine | None:
        """Runs in the worker: model B's engine, loaded (reused when it is the same model)."""
        if self._engine_b is not None and self._engine_b_path == path:
            return self._engine_b
        self._unload_b()
        side.state = "loading…"
        app = self.lmdesk
        try:
            engine = app.session.factory(load_params(app.settings, path))
            engine.load()
        except Exception as exc:
            side.error = _("could not load {name}: {exc}", name=side.name, exc=exc)
            return None
        self._engine_b, self._engine_b_path = engine, path
        side.state = "waiting"
        return engine

    def _unload_b(self) -> None:
        engine, self._engine_b, self._engine_b_path = self._engine_b, None, ""
        if engine is not None:
            try:
                engine.cancel()
                engine.unload()
            except Exception:
                pass

    @staticmethod
    def _generate(engine: Engine, side: Side, messages: tuple[ChatMessage, ...],
                  sampling: SamplingParams, cancel: threading.Event) -> None:
        side.state = "thinking…"
        side.started = time.perf_counter()
        cancel_sent = False
        try:
            for event in engine.generate(messages, sampling):
                if isinstance(event, TextDelta):
                    with side.lock:
                        side.parts.append(event.text)
                        side.tokens += event.n_tokens
                elif isinstance(event, Done):
                    side.done = event
                    if event.error:
                        side.error = event.error
                if cancel.is_set() and not cancel_sent:
                    engine.cancel()
                    cancel_sent = True
        except Exception as exc:  # shown in the pane; the app goes on
            side.error = f"{type(exc).__name__}: {exc}"
        if side.done is None and not side.error:
            side.error = _("the engine stopped without finishing")
        if side.done is not None and side.done.text:
            with side.lock:
                side.parts = [side.done.text]
        side.state = "done"

    def on_compare_update(self, event: CompareUpdate) -> None:
        event.stop()
        assert self.sides is not None
        self._note(f"A: {self.sides[0].name}   B: {self.sides[1].name}   {event.note}")

    def on_compare_finished(self, event: CompareFinished) -> None:
        event.stop()
        self.running = False
        self.mode = event.mode
        self._refresh()
        self._save(event.prompt, event.mode)

    def _save(self, prompt: str, mode: Mode) -> None:
        """Keep the pair in the conversation: the prompt, then one message with both answers."""
        assert self.sides is not None
        app = self.lmdesk
        cid = self.conversation_id
        if cid is None or app.read_only:
            return
        a, b = self.sides
        content = "\n\n".join(
            f"**{s.name}**\n\n{s.text or '(no answer: ' + (s.error or 'empty') + ')'}"
            for s in (a, b)
        )
        stats = {"compare": {"models": [a.name, b.name], "mode": mode,
                             "results": [a.result(), b.result()]}}
        with app.guard(_("Could not save the comparison")):
            app.store.append_message(cid, "user", prompt)
            saved = app.store.append_message(cid, "assistant", content,
                                             model=f"{a.name} vs {b.name}", stats=stats)
            self.saved_message_id = saved.id
            self._note(_("A: {name}   B: {name2}   ran {mode}; kept in the conversation.",
                         name=a.name, name2=b.name, mode=mode))

    def action_stop_or_close(self) -> None:
        if self.running:
            self._cancel.set()
            self._note("Stopping…")
            return
        self.app.pop_screen()

    async def on_unmount(self) -> None:
        self._cancel.set()
        engine, self._engine_b = self._engine_b, None
        if engine is not None:
            threading.Thread(target=_unload, args=(engine,), name="lmdesk-compare-unload",
                             daemon=True).start()
        if self.saved_message_id is not None and self.conversation_id is not None:
            with contextlib.suppress(Exception):  # show the saved pair in the chat
                await self.lmdesk.open_conversation(self.conversation_id)


def _unload(engine: Engine) -> None:
    try:
        engine.cancel()
        engine.unload()
    except Exception:
        pass
