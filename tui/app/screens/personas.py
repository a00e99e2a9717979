"""Choose the conversation's persona; see and edit its system prompt, tone, sampling preset and
example pairs; export the examples as JSONL for fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from tui.app.screens.confirm import MODAL_CSS
from tui.app.screens.text_input import TextInputScreen
from tui.i18n import N_, _
from tui.prompting.personas import (
    Example,
    Persona,
    PersonaError,
    PersonaLibrary,
    export_examples,
)
from tui.prompting.templates import PromptingError
from tui.store import ConversationMeta, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

NONE_ID = "-none-"
EXAMPLE_SEP = "\n---\n"


def parse_sampling(text: str) -> dict[str, float | int]:
    """``temperature=0.3, top_p=0.9`` -> a preset (validated by the persona)."""
    out: dict[str, float | int] = {}
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise PersonaError(_("write the sampling preset as key=value, got {strip!r}",
                                 strip=part.strip()))
        try:
            number = float(value)
        except ValueError:
            raise PersonaError(_("{strip}: {strip2!r} is not a number",
                                 strip=key.strip(), strip2=value.strip())) from None
        out[key.strip()] = int(number) if number.is_integer() and key.strip() in (
            "top_k", "max_tokens", "seed") else number
    return out


def examples_text(examples: tuple[Example, ...]) -> str:
    return EXAMPLE_SEP.join(f"{e.instruction}\n=>\n{e.response}" for e in examples)


def parse_examples(text: str) -> tuple[Example, ...]:
    """Blocks separated by a ``---`` line, each ``instruction`` then ``=>`` then ``response``."""
    out: list[Example] = []
    for block in text.split(EXAMPLE_SEP):
        if not block.strip():
            continue
        instruction, sep, response = block.partition("\n=>\n")
        if not sep:
            raise PersonaError(_("each example is an instruction, a line '=>', then the "
                                 "response (examples are separated by a line '---')"))
        out.append(Example(instruction.strip(), response.strip()))
    return tuple(out)


class PersonasScreen(ModalScreen[None]):
    """The personas: enter uses the highlighted one in this conversation."""

    DEFAULT_CSS = (
        "PersonasScreen {" + MODAL_CSS + """
        & > Vertical { width: 110; }
        #personas-main { height: auto; }
        #persona-list { width: 32; height: 22; }
        #persona-detail { width: 1fr; height: auto; padding-left: 1; }
        #persona-prompt { height: 6; }
        #persona-examples { height: 6; }
        .persona-label { color: $text-secondary; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", N_("Save"), id="personas.save", priority=True),
        Binding("ctrl+d", "duplicate", N_("Duplicate"), id="personas.duplicate", priority=True),
        Binding("ctrl+x", "export", N_("Export examples"), id="personas.export", priority=True),
        Binding("escape", "close", N_("Close"), id="personas.close"),
    ]

    def __init__(self, meta: ConversationMeta | None,
                 on_choose: Callable[[str | None], None]) -> None:
        super().__init__()
        self.meta = meta
        self.on_choose = on_choose
        self.personas: list[Persona] = []

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def library(self) -> PersonaLibrary:
        return PersonaLibrary(self.lmdesk.store)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Personas")
            with Horizontal(id="personas-main"):
                yield OptionList(id="persona-list")
                with Vertical(id="persona-detail"):
                    yield Static(id="persona-about", markup=False)
                    yield Static(_("System prompt"), classes="persona-label")
                    yield TextArea(id="persona-prompt", soft_wrap=True)
                    yield Static(_("Tone (neutral, technical, creative, formal, friendly, "
                                   "concise, didactic, or your own words)"),
                                 classes="persona-label")
                    yield Input(id="persona-tone")
                    yield Static(_("Sampling preset (temperature=0.3, top_p=0.9, …)"),
                                 classes="persona-label")
                    yield Input(id="persona-sampling")
                    yield Static(_("Examples: instruction, a line '=>', the response; '---' "
                                   "between examples"), classes="persona-label")
                    yield TextArea(id="persona-examples", soft_wrap=True)
            yield Static(_("enter: use in this conversation   ctrl+s: save   ctrl+d: duplicate  "
                           " ctrl+x: export examples (JSONL)   esc: close"), classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Close"), id="close")
                yield Button(_("Duplicate"), id="duplicate")
                yield Button(_("Save"), id="save")
                yield Button(_("Use"), id="use", variant="primary")

    def on_mount(self) -> None:
        self.refresh_list()
        self.query_one("#persona-list", OptionList).focus()

    def _current_id(self) -> str | None:
        if self.meta is None:
            return None
        return self.meta.options.persona

    def refresh_list(self, select: str | None = None) -> None:
        try:
            self.personas = self.library.list_personas()
        except StoreError as exc:
            self.notify(_("Could not read the personas: {exc}", exc=exc), severity="error")
            self.personas = []
        current = self._current_id()
        listing = self.query_one("#persona-list", OptionList)
        listing.clear_options()
        options = [Option(Content(("● " if current is None else "  ") + _("No persona")),
                          id=NONE_ID)]
        for p in self.personas:
            mark = "● " if p.id == current else "  "
            built_in = _(" · built in") if p.builtin else ""
            options.append(Option(Content(f"{mark}{p.name}{built_in}"), id=p.id))
        listing.add_options(options)
        ids = [NONE_ID, *(p.id for p in self.personas)]
        wanted = select or current or NONE_ID
        listing.highlighted = ids.index(wanted) if wanted in ids else 0
        self.show_detail()

    def selected(self) -> Persona | None:
        index = self.query_one("#persona-list", OptionList).highlighted
        if index is None or index == 0 or index > len(self.personas):
            return None
        return self.personas[index - 1]

    def show_detail(self) -> None:
        p = self.selected()
        about = _("No persona: the conversation's own system prompt only.")
        if p is not None:
            about = f"{p.name} ({p.id})" + (_(" · built in: duplicate to edit") if p.builtin
                                            else "")
            if p.description:
                about += f"\n{p.description}"
        self.query_one("#persona-about", Static).update(Content(about))
        self.query_one("#persona-prompt", TextArea).load_text(p.system_prompt if p else "")
        self.query_one("#persona-tone", Input).value = p.tone if p else ""
        self.query_one("#persona-sampling", Input).value = (
            ", ".join(f"{k}={v}" for k, v in p.sampling.items()) if p else "")
        self.query_one("#persona-examples", TextArea).load_text(
            examples_text(p.examples) if p else "")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.show_detail()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_use()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"use": self.action_use, "save": self.action_save,
                   "duplicate": self.action_duplicate, "close": self.action_close}
        actions.get(event.button.id or "close", self.action_close)()

    def action_use(self) -> None:
        p = self.selected()
        self.on_choose(p.id if p else None)
        self.dismiss(None)

    def action_save(self) -> None:
        p = self.selected()
        if p is None:
            return
        if p.builtin:
            self.notify(_("{name} is built in: ctrl+d duplicates it, then edit the copy.",
                          name=p.name),
                        severity="warning")
            return
        try:
            self.library.update(
                p.id, system_prompt=self.query_one("#persona-prompt", TextArea).text,
                tone=self.query_one("#persona-tone", Input).value.strip() or "neutral",
                sampling=parse_sampling(self.query_one("#persona-sampling", Input).value),
                examples=parse_examples(self.query_one("#persona-examples", TextArea).text))
        except (PromptingError, StoreError) as exc:
            self.notify(_("Could not save {name}: {exc}",
                          name=p.name, exc=exc), severity="error", timeout=10)
            return
        self.notify(_("Saved persona {name}.", name=p.name))
        self.refresh_list(select=p.id)

    def action_duplicate(self) -> None:
        p = self.selected()
        if p is None:
            return
        try:
            copy = self.library.duplicate(p.id)
        except (PromptingError, StoreError) as exc:
            self.notify(_("Could not duplicate {name}: {exc}",
                          name=p.name, exc=exc), severity="error")
            return
        self.notify(_("Duplicated as {name}: edit it, then ctrl+s.", name=copy.name))
        self.refresh_list(select=copy.id)

    def action_export(self) -> None:
        p = self.selected()
        if p is None:
            return
        if not p.examples:
            self.notify(_("{name} has no examples to export.", name=p.name), severity="warning")
            return

        def chosen(path: str | None) -> None:
            if not path:
                return
            from pathlib import Path

            try:
                n = export_examples(p, Path(path).expanduser())
            except OSError as exc:
                self.notify(_("Could not export: {exc}", exc=exc), severity="error")
                return
            self.notify(_("Wrote {n} examples to {path}.", n=n, path=path))

        self.app.push_screen(TextInputScreen(
            _("Export {name}'s examples", name=p.name), f"{p.id}-examples.jsonl",
            hint=_("A JSONL file (chat format for fine-tuning). Enter: write   esc: cancel")),
            chosen)

    def action_close(self) -> None:
        self.dismiss(None)
