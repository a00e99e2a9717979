"""Fill a template: one field per variable (its default filled in, its description shown), a
live preview of the filled prompt, rendering errors shown where the preview would be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static, TextArea

from tui.app.screens.confirm import MODAL_CSS
from tui.i18n import N_, _
from tui.prompting.templates import Template, TemplateError


@dataclass(frozen=True)
class FilledPrompt:
    text: str
    send: bool
    """True: send it now; False: put it in the prompt box to edit first."""


class TemplateFormScreen(ModalScreen[FilledPrompt | None]):
    """Returns the filled prompt (and whether to send it), or None when cancelled."""

    DEFAULT_CSS = (
        "TemplateFormScreen {" + MODAL_CSS + """
        & > Vertical { width: 100; }
        #form-fields { height: auto; max-height: 14; }
        .form-label { margin-top: 1; color: $text-secondary; }
        .form-text { height: 5; }
        #form-preview-box {
            height: 10;
            border: round $panel;
            border-title-color: $text-muted;
            margin-top: 1;
        }
        #form-preview.-error { color: $text-error; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "insert", N_("Put in prompt"), id="template_form.insert", priority=True),
        Binding("ctrl+r", "send", N_("Send"), id="template_form.send", priority=True),
        Binding("ctrl+l", "fill_selection", N_("Fill from message"), id="template_form.selection",
                priority=True),
        Binding("escape", "cancel", N_("Cancel"), id="template_form.cancel"),
    ]

    def __init__(self, template: Template, selection: str = "") -> None:
        super().__init__()
        self.template = template
        self.selection = selection
        """The message selected in the chat (else the last reply): ctrl+l puts it in a field."""

    def compose(self) -> ComposeResult:
        t = self.template
        with Vertical() as box:
            box.border_title = _("Template: {value}", value=t.title or t.name)
            if t.description:
                yield Static(t.description, classes="modal-hint", markup=False)
            with VerticalScroll(id="form-fields"):
                if not t.variables:
                    yield Static(_("This template has no variables."), classes="modal-hint")
                for var in t.variables:
                    label = var.name + (" (required)" if var.required else "")
                    if var.description:
                        label += f": {var.description}"
                    yield Static(label, classes="form-label", markup=False)
                    if var.multiline:
                        yield TextArea(var.default or "", id=f"var-{var.name}",
                                       classes="form-text", soft_wrap=True)
                    else:
                        yield Input(var.default or "", placeholder=var.description,
                                    id=f"var-{var.name}")
            with VerticalScroll(id="form-preview-box") as preview:
                preview.border_title = _("Preview")
                yield Static(id="form-preview", markup=False)
            yield Static(_("ctrl+s: put in the prompt   ctrl+r: send   ctrl+v: paste the "
                           "clipboard   ctrl+l: paste the selected message   esc: cancel"),
                         classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Cancel"), id="cancel")
                yield Button(_("Put in prompt"), id="insert")
                yield Button(_("Send"), id="send", variant="primary")

    def on_mount(self) -> None:
        fields = self._fields()
        if fields:
            fields[0].focus()
        self.update_preview()

    def _fields(self) -> list[Input | TextArea]:
        out: list[Input | TextArea] = []
        for var in self.template.variables:
            widget = self.query_one(f"#var-{var.name}")
            assert isinstance(widget, Input | TextArea)
            out.append(widget)
        return out

    def values(self) -> dict[str, str]:
        """The filled fields; an empty one falls back to the default (or is missing)."""
        out: dict[str, str] = {}
        for var, widget in zip(self.template.variables, self._fields(), strict=True):
            text = widget.value if isinstance(widget, Input) else widget.text
            if text.strip():
                out[var.name] = text
        return out

    def render_prompt(self) -> tuple[str | None, str]:
        """(the filled prompt, "") or (None, the error)."""
        try:
            return self.template.render(self.values()), ""
        except TemplateError as exc:
            return None, f"⚠ {exc}"

    def update_preview(self) -> None:
        text, error = self.render_prompt()
        preview = self.query_one("#form-preview", Static)
        preview.set_class(text is None, "-error")
        preview.update(Content(text if text is not None else error))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.update_preview()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self.update_preview()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "send":
            self.action_send()
        elif event.button.id == "insert":
            self.action_insert()
        else:
            self.action_cancel()

    def _finish(self, send: bool) -> None:
        text, error = self.render_prompt()
        if text is None:
            self.notify(error, title=_("The template cannot be filled"), severity="error")
            return
        self.dismiss(FilledPrompt(text, send))

    def action_insert(self) -> None:
        self._finish(False)

    def action_send(self) -> None:
        self._finish(True)

    def action_fill_selection(self) -> None:
        focused = self.focused
        if not self.selection:
            self.notify(_("No message is selected in the chat."), severity="warning")
        elif isinstance(focused, Input):
            focused.insert_text_at_cursor(self.selection)
        elif isinstance(focused, TextArea):
            focused.insert(self.selection)
        else:
            self.notify(_("Move to a field first (tab)."), severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)
