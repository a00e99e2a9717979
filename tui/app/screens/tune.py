"""Personalise a model (alt+u): fine-tune a LoRA on your own pairs, guided step by step.

1. the base model; 2. the pairs: a JSONL/CSV file, a persona's examples, or the replies marked
good in any chat (alt+y); 3. a name and the few settings that matter. "Check" counts the pairs
and their tokens in the model's template and estimates time, memory and disk (green, amber,
red); "Start" trains in its own process (``tui/tune``) with a progress bar that can be
cancelled and resumed from the last checkpoint. At the end: the held-out loss before and after,
held-out questions answered by the base and the tuned model side by side, and a new model
profile the switcher offers like any other.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, ProgressBar, Select, Static

from tui.i18n import N_, _, n_
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
    from collections.abc import Callable, Iterator

    from tui.app.app import LmdeskApp
    from tui.app.screens.chat import ChatScreen
    from tui.tune.run import PairsSource, TunePlan, TuneResult, TuneSpec


class Job(Protocol):
    def events(self) -> Iterator[Any]: ...
    def cancel(self) -> None: ...


class Runner(Protocol):
    """What the screen needs of ``tui.tune.run.Tuner`` (a fake in the UI tests)."""

    def plan(self, spec: TuneSpec, *, resuming: bool = False) -> TunePlan: ...
    def start(self, plan: TunePlan, *, resume: bool = False) -> Job: ...
    def finish(self, plan: TunePlan, done: Finished, *,
               status: Callable[[str], None] | None = None) -> TuneResult: ...
    def stopped_runs(self) -> list[str]: ...
    def resume_spec(self, name: str) -> TuneSpec: ...


def toggle_good_mark(app: LmdeskApp, chat: ChatScreen) -> None:
    """Mark the selected (else last) finished reply good, with the question before it."""
    from tui.tune.marks import GoodReplies

    history = chat.pane.history
    message = chat.pane.copy_source()
    if message is not None and message.role != "assistant":
        message = None
    if message is None or message.status != "done" or not message.content.strip():
        app.notify(_("Select a finished reply to mark it good."))
        return
    index = next((i for i, m in enumerate(history) if m.id == message.id), -1)
    question = next((m for m in reversed(history[:index]) if m.role == "user"), None)
    if chat.meta is None or question is None:
        app.notify(_("That reply has no question before it."))
        return
    with app.guard(_("Could not save the mark")):
        marks = GoodReplies(app.store)
        marked = marks.toggle(message.id, chat.meta.id, question.content, message.content,
                              system=chat.meta.system_prompt, model=message.model or "")
        count = len(marks.marks())
        app.notify(n_("Marked good: {count} reply to tune a model on ({key}).",
                      "Marked good: {count} replies to tune a model on ({key}).",
                      count, key=app.key_for("tune"))
                   if marked else n_("Unmarked: {count} reply left.",
                                     "Unmarked: {count} replies left.", count))


class TuneScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Back"), id="tune.close"),
        # keys a text box does not take (ctrl+k, ctrl+x and friends edit the text)
        Binding("f5", "check", N_("Check"), id="tune.check"),
        Binding("f6", "start", N_("Start"), id="tune.start"),
        Binding("f8", "cancel_run", N_("Cancel"), id="tune.cancel"),
    ]
    DEFAULT_CSS = """
    TuneScreen {
        & #tune-form { padding: 0 1; }
        & .tune-step { text-style: bold; color: $accent; margin-top: 1; }
        & Horizontal { height: auto; }
        & Input { width: 1fr; }
        & .tune-small { width: 14; }
        & Button { margin-right: 1; }
        & #tune-estimate { margin-top: 1; }
        & #tune-estimate.-green { color: $success; }
        & #tune-estimate.-amber { color: $warning; }
        & #tune-estimate.-red { color: $error; }
        & #tune-status { color: $text-muted; }
        & #tune-samples { height: auto; margin-top: 1; }
        & .tune-sample { width: 1fr; padding: 0 1; border: round $primary; height: auto; }
    }
    """

    class Planned(Message):
        def __init__(self, plan: TunePlan | None, error: str = "") -> None:
            super().__init__()
            self.plan = plan
            self.error = error

    class Event(Message):
        def __init__(self, event: object) -> None:
            super().__init__()
            self.event = event

    class Ended(Message):
        def __init__(self, result: TuneResult | None, text: str, ok: bool,
                     stopped: bool = False) -> None:
            super().__init__()
            self.result = result
            self.text = text
            self.ok = ok
            self.stopped = stopped
            """Cancelled by the user (a checkpoint is kept), not failed."""

    def __init__(self, runner: Runner | None = None) -> None:
        super().__init__(id="tune-screen")
        self._runner = runner
        self.plan: TunePlan | None = None
        self.job: Job | None = None
        self.running = False
        self._lock = threading.Lock()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from tui.tune.run import Tuner

            paths = self.lmdesk.paths
            self._runner = cast(Runner, Tuner(paths.data_dir, self.lmdesk.store,
                                              log_dir=paths.cache_dir))
        return self._runner

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="tune-form"):
            yield Static(_("Personalise a model: teach it your style from your own questions "
                           "and answers. Everything stays on this machine."), markup=False)
            yield Static(_("1. The base model"), classes="tune-step")
            yield Select(self._model_options(), id="tune-base", allow_blank=False)
            yield Static(_("2. The pairs to learn from"), classes="tune-step")
            yield Select(self._source_options(), id="tune-source", allow_blank=False)
            yield Input(placeholder=_("a JSONL or CSV file with instruction and response fields"),
                        id="tune-file")
            yield Static(_("3. A name and the settings"), classes="tune-step")
            with Horizontal():
                yield Input(placeholder=_("name, like ada-style"), id="tune-name")
                defaults = TrainParams()
                yield Input(str(defaults.epochs), id="tune-epochs", classes="tune-small",
                            tooltip=_("epochs: passes over the pairs"))
                yield Input(str(defaults.rank), id="tune-rank", classes="tune-small",
                            tooltip=_("LoRA rank"))
                yield Input(f"{defaults.learning_rate:g}", id="tune-lr", classes="tune-small",
                            tooltip=_("learning rate"))
            with Horizontal():
                yield Button(_("Check"), id="tune-check", variant="primary")
                yield Button(_("Start"), id="tune-start", variant="success", disabled=True)
                yield Button(_("Cancel"), id="tune-cancel", variant="error", disabled=True)
            yield Static("", id="tune-estimate", markup=False)
            yield ProgressBar(id="tune-progress", show_eta=False)
            yield Static("", id="tune-status", markup=False)
            with Horizontal(id="tune-samples"):
                yield Static("", id="tune-base-answers", classes="tune-sample", markup=False)
                yield Static("", id="tune-tuned-answers", classes="tune-sample", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tune-samples").display = False
        self.query_one("#tune-name", Input).focus()
        stopped = self._stopped()
        if stopped:
            self._status(_("Stopped runs that can resume: {join} (type the name and press "
                           "Start).", join=', '.join(stopped)))

    def _model_options(self) -> list[tuple[str, str]]:
        from tui.models.registry import folder_models, packaged_models

        app = self.lmdesk
        refs = packaged_models() + folder_models(app.settings.model_dirs)
        options = [(ref.name, str(ref.path)) for ref in refs]
        if app.model_path and all(path != app.model_path for _, path in options):
            options.insert(0, (app.model_name, app.model_path))
        current = [o for o in options if o[1] == app.model_path]
        return current + [o for o in options if o[1] != app.model_path] or [("(none)", "")]

    def _source_options(self) -> list[tuple[str, str]]:
        from tui.prompting.personas import PersonaLibrary
        from tui.tune.marks import GoodReplies

        options = [(_("A file of pairs (JSONL or CSV)"), "file")]
        try:
            marked = len(GoodReplies(self.lmdesk.store).pairs())
            personas = [p for p in PersonaLibrary(self.lmdesk.store).list_personas()
                        if p.examples]
        except Exception:  # an unreadable table must not keep the screen from opening
            marked, personas = 0, []
        options.append((_("Replies marked good ({marked}, mark with {key_for})",
                          marked=marked, key_for=self.lmdesk.key_for('mark_good')), "marked"))
        options += [(_("Persona {name} ({count} examples)",
                       name=p.name, count=len(p.examples)), f"persona:{p.id}")
                    for p in personas]
        return options

    def _stopped(self) -> list[str]:
        try:
            return self.runner.stopped_runs()
        except OSError:
            return []

    # -- reading the form ------------------------------------------------------------------

    def _spec(self) -> TuneSpec:
        from tui.tune.cli import persona_source
        from tui.tune.marks import GoodReplies
        from tui.tune.run import PairsSource, TuneSpec

        name = self.query_one("#tune-name", Input).value.strip()
        if not name:
            raise TuneError(_("Give the tuned model a name (step 3)."))
        base = str(self.query_one("#tune-base", Select).value or "")
        if not base:
            raise TuneError(_("Choose a base model (step 1)."))
        kind = str(self.query_one("#tune-source", Select).value)
        source: PairsSource
        if kind == "file":
            path = self.query_one("#tune-file", Input).value.strip()
            if not path:
                raise TuneError(_("Give the path of a JSONL or CSV file of pairs (step 2)."))
            source = PairsSource.from_file(path)
        elif kind == "marked":
            source = PairsSource.from_pairs(_("replies marked good"),
                                            GoodReplies(self.lmdesk.store).pairs())
        else:
            source = persona_source(self.lmdesk.store, kind.removeprefix("persona:"))
        params = TrainParams(epochs=self._number("#tune-epochs", int, "epochs"),
                             rank=self._number("#tune-rank", int, "rank"),
                             learning_rate=self._number("#tune-lr", float, _("learning rate")))
        label = next((str(label) for label, value in self._model_options() if value == base),
                     base)
        return TuneSpec(name, base, label, source, params)

    def _number(self, selector: str, kind: Callable[[str], Any], what: str) -> Any:
        text = self.query_one(selector, Input).value.strip()
        try:
            return kind(text)
        except ValueError:
            raise TuneError(_("The {what} must be a number, got {text!r}.",
                              what=what, text=text)) from None

    # -- actions ---------------------------------------------------------------------------

    def action_close(self) -> None:
        if self.running:
            self.lmdesk.notify(_("Training goes on: cancel it first (it keeps a checkpoint)."),
                               severity="warning")
            return
        self.dismiss()

    @on(Button.Pressed, "#tune-check")
    def action_check(self) -> None:
        if self.running:
            return
        name = self.query_one("#tune-name", Input).value.strip()
        resuming = bool(name) and name in self._stopped()
        try:
            spec = self.runner.resume_spec(name) if resuming else self._spec()
        except TuneError as exc:
            self._estimate(str(exc), "red")
            return
        self._estimate(_("Checking the pairs in the model's template…"), "")
        self.query_one("#tune-start", Button).disabled = True
        self._plan(spec, resuming)

    @work(thread=True, exclusive=True, group="tune-plan")
    def _plan(self, spec: TuneSpec, resuming: bool) -> None:
        try:
            plan = self.runner.plan(spec, resuming=resuming)
        except (TuneError, OSError) as exc:
            self.post_message(self.Planned(None, str(exc)))
            return
        self.post_message(self.Planned(plan))

    @on(Planned)
    def _planned(self, message: Planned) -> None:
        self.plan = message.plan
        if message.plan is None:
            self._estimate(message.error, "red")
            return
        est = message.plan.estimate
        resume = message.plan.spec.name in self._stopped()
        note = _(" A stopped run of this name resumes from its checkpoint.") if resume else ""
        self._estimate(est.summary() + note, est.verdict)
        self.query_one("#tune-start", Button).disabled = False

    @on(Button.Pressed, "#tune-start")
    def action_start(self) -> None:
        if self.running or self.plan is None:
            if self.plan is None:
                self.lmdesk.notify(_("Check first: it counts the pairs and estimates the run."))
            return
        self.running = True
        for button, disabled in (("#tune-start", True), ("#tune-check", True),
                                 ("#tune-cancel", False)):
            self.query_one(button, Button).disabled = disabled
        self.query_one("#tune-samples").display = False
        self._train(self.plan, self.plan.spec.name in self._stopped())

    @on(Button.Pressed, "#tune-cancel")
    def action_cancel_run(self) -> None:
        with self._lock:
            job = self.job
        if job is not None:
            job.cancel()
            self._status(_("Stopping after this step (writing a checkpoint)…"))

    @work(thread=True, exclusive=True, group="tune-run")
    def _train(self, plan: TunePlan, resume: bool) -> None:
        try:
            job = self.runner.start(plan, resume=resume)
            with self._lock:
                self.job = job
            last: object = None
            for event in job.events():
                last = event
                self.post_message(self.Event(event))
            if isinstance(last, Finished):
                def status(text: str) -> None:
                    self.post_message(self.Event(Stage(text)))

                result = self.runner.finish(plan, last, status=status)
                self.post_message(self.Ended(result, "", True))
            elif isinstance(last, Cancelled):
                self.post_message(self.Ended(None, _(
                    "Stopped after step {step}. Press Check then Start to resume from there.",
                    step=last.step), False, stopped=True))
            else:
                error = last.message if isinstance(last, Failed) else _("training ended early")
                self.post_message(self.Ended(None, error, False))
        except (TuneError, OSError) as exc:
            self.post_message(self.Ended(None, str(exc), False))
        finally:
            with self._lock:
                self.job = None

    @on(Event)
    def _event(self, message: Event) -> None:
        event = message.event
        if isinstance(event, Stage):
            self._status(event.text[:1].upper() + event.text[1:] + "…")
        elif isinstance(event, Progress):
            self.query_one(ProgressBar).update(total=event.total_steps, progress=event.step)
            minutes, seconds = divmod(max(0, round(event.eta_s)), 60)
            self._status(_("Step {step}/{total_steps} · epoch {epoch} · loss {loss:.3f} · "
                           "{tokens_per_s:,.0f} tok/s · ETA {minutes}:{seconds:02d}",
                           step=event.step, total_steps=event.total_steps, epoch=event.epoch,
                           loss=event.loss, tokens_per_s=event.tokens_per_s, minutes=minutes,
                           seconds=seconds))
        elif isinstance(event, Evaluated):
            self.query_one("#tune-estimate", Static).update(
                _("Held-out loss {holdout_loss:.3f} after step {step}.",
                  holdout_loss=event.holdout_loss, step=event.step))

    @on(Ended)
    def _ended(self, message: Ended) -> None:
        self.running = False
        self.query_one("#tune-cancel", Button).disabled = True
        self.query_one("#tune-check", Button).disabled = False
        self.plan = None
        result = message.result
        if result is None:
            self._status(message.text)
            self.lmdesk.notify(message.text, title=_("Tuning"),
                               severity="information" if message.stopped else "error",
                               timeout=12)
            return
        losses = result.record["losses"]
        before, after = losses["holdout_before"], losses["holdout_after"]
        loss = (_("held-out loss {before:.3f} → {after:.3f}; ", before=before, after=after)
                if before is not None and after is not None else "")
        self._status(_("Done: {loss}profile {nickname!r} is in the model switcher's profiles. "
                       "Adapter: {adapter_path}",
                       loss=loss, nickname=result.profile.nickname,
                       adapter_path=result.adapter_path))
        base_text = "\n\n".join(f"Q: {s.question}\n{s.base}" for s in result.samples)
        tuned_text = "\n\n".join(f"Q: {s.question}\n{s.tuned}" for s in result.samples)
        self.query_one("#tune-base-answers", Static).update(_("BASE\n\n{base_text}",
                                                              base_text=base_text))
        self.query_one("#tune-tuned-answers", Static).update(
            _("TUNED ({nickname})\n\n{tuned_text}",
              nickname=result.profile.nickname, tuned_text=tuned_text))
        self.query_one("#tune-samples").display = True
        self.lmdesk.notify(_("{nickname} is ready.",
                             nickname=result.profile.nickname), title=_("Tuning"))

    def _estimate(self, text: str, verdict: str) -> None:
        widget = self.query_one("#tune-estimate", Static)
        widget.update(text)
        widget.set_classes(f"-{verdict}" if verdict else "")

    def _status(self, text: str) -> None:
        self.query_one("#tune-status", Static).update(text)


