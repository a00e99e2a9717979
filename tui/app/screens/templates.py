"""The template library: search, filter by tag and language, preview; create, edit, duplicate,
delete (built-ins are read-only: duplicate to edit), import and export files; enter fills one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from tui.app.screens.confirm import MODAL_CSS, ConfirmScreen
from tui.app.screens.template_form import FilledPrompt, TemplateFormScreen
from tui.app.screens.text_input import TextInputScreen
from tui.i18n import N_, _, current_language, n_
from tui.prompting.templates import (
    PromptingError,
    Template,
    TemplateError,
    TemplateLibrary,
    Variable,
    variables_from_body,
)
from tui.store import StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

ALL = "*"


def describe(t: Template) -> str:
    """The preview of a template: what it is, its variables, its body."""
    lines = [t.title or t.name, _("name: {name}   lang: {lang}", name=t.name, lang=t.lang)
             + (f"   tags: {', '.join(t.tags)}" if t.tags else "")
             + (_("   (built in: duplicate to edit)") if t.builtin else "")]
    if t.description:
        lines += ["", t.description]
    if t.variables:
        lines += ["", "Variables:"]
        for v in t.variables:
            default = "required" if v.required else f"default {v.default!r}"
            lines.append(f"  {v.name} ({default})" + (f": {v.description}" if v.description
                                                      else ""))
    lines += ["", t.body]
    return "\n".join(lines)


class SearchBox(Input):
    """The search box: what is typed filters the list; down moves into it, enter uses the
    highlighted template."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down", "screen.into_list", N_("Results"), show=False, id="templates.results"),
    ]


class TemplateList(OptionList):
    """The templates; single keys act on the highlighted one (only while the list has focus:
    elsewhere they are typed), other letters go to the search box."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "screen.new", N_("New"), id="templates.new"),
        Binding("e", "screen.edit", N_("Edit"), id="templates.edit"),
        Binding("d", "screen.duplicate", N_("Duplicate"), id="templates.duplicate"),
        Binding("delete", "screen.delete", N_("Delete"), id="templates.delete"),
        Binding("i", "screen.import_file", N_("Import"), id="templates.import"),
        Binding("x", "screen.export_file", N_("Export"), id="templates.export"),
    ]

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and not self.screen.active_bindings.get(
                event.key):
            event.stop()
            event.prevent_default()
            search = self.screen.query_one(SearchBox)
            search.focus()
            search.insert_text_at_cursor(event.character)


class TemplatesScreen(Screen[FilledPrompt | None]):
    """Returns the filled prompt chosen in the form, or None when closed."""

    DEFAULT_CSS = """
    TemplatesScreen {
        background: $background;
        #templates-title { color: $text-primary; text-style: bold; padding: 0 1; }
        #templates-filters { height: auto; }
        #templates-search { width: 1fr; }
        #templates-filters Select { width: 24; }
        #templates-main { height: 1fr; }
        #template-list { width: 40%; height: 1fr; border: round $panel; }
        #template-list:focus { border: round $primary; }
        #template-preview-box { width: 1fr; height: 1fr; border: round $panel; padding: 0 1; }
        #templates-hint { color: $text-muted; padding: 0 1; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Close"), id="templates.close"),
        Binding("ctrl+n", "new", N_("New"), id="templates.new_any", priority=True),
    ]

    def __init__(self, query: str = "", selection: str = "") -> None:
        super().__init__(id="templates-screen")
        self._query = query
        self.selection = selection
        self.templates: list[Template] = []

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def library(self) -> TemplateLibrary:
        return TemplateLibrary(self.lmdesk.store)

    def compose(self) -> ComposeResult:
        library = self.library
        langs = sorted({t.lang for t in library.list_templates()})
        # the built-in templates exist in English and Spanish: in Spanish, show the Spanish
        # ones first (the filter goes back to every language with one choice)
        here = current_language().code
        shown = here if here != "en" and here in langs else ALL
        tags = library.tags()
        yield Static(_("Template library"), id="templates-title")
        with Horizontal(id="templates-filters"):
            yield SearchBox(self._query, placeholder=_("Search templates… (↓: the results)"),
                            id="templates-search")
            yield Select([(_("All languages"), ALL), *((lang, lang) for lang in langs)],
                         value=shown, allow_blank=False, id="templates-lang")
            yield Select([(_("All tags"), ALL),
                          *((f"{tag} ({n})", tag) for tag, n in tags.items())],
                         value=ALL, allow_blank=False, id="templates-tag")
        with Horizontal(id="templates-main"):
            yield TemplateList(id="template-list")
            with VerticalScroll(id="template-preview-box"):
                yield Static(id="template-preview", markup=False)
        yield Static(_("enter: fill and use   in the list: n new  e edit  d duplicate  delete  "
                       "i import  x export   esc: close"), id="templates-hint")

    def on_mount(self) -> None:
        self.refresh_list()
        for notice in self.library.notices:
            self.notify(notice, severity="warning")
        self.query_one(SearchBox).focus()

    # -- the list ------------------------------------------------------------------------------

    def _filter(self, select_id: str) -> str | None:
        value = self.query_one(select_id, Select).value
        return None if value == ALL or not isinstance(value, str) else value

    def refresh_list(self, select: str | None = None) -> None:
        query = self.query_one("#templates-search", Input).value
        try:
            self.templates = self.library.list_templates(
                tag=self._filter("#templates-tag"), lang=self._filter("#templates-lang"),
                query=query or None)
        except (PromptingError, StoreError) as exc:
            self.notify(_("Could not read the templates: {exc}", exc=exc), severity="error")
            self.templates = []
        listing = self.query_one(TemplateList)
        current = self.current()
        wanted = select or (current.name if current else None)
        listing.clear_options()
        built_in = _("  · built in")
        listing.add_options([
            Option(Content(f"{t.name}{built_in if t.builtin else ''}"), id=t.name)
            for t in self.templates])
        if self.templates:
            names = [t.name for t in self.templates]
            listing.highlighted = names.index(wanted) if wanted in names else 0
        self.show_preview()

    def current(self) -> Template | None:
        listing = self.query_one(TemplateList)
        index = listing.highlighted
        if index is None or not 0 <= index < len(self.templates):
            return None
        return self.templates[index]

    def show_preview(self) -> None:
        t = self.current()
        text = describe(t) if t is not None else _("No template matches.")
        self.query_one("#template-preview", Static).update(Content(text))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "templates-search":
            event.stop()
            self.refresh_list()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "templates-search":
            event.stop()
            self.use_template()

    def action_into_list(self) -> None:
        self.query_one(TemplateList).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if self.is_mounted:
            self.refresh_list()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.show_preview()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.use_template()

    # -- actions -------------------------------------------------------------------------------

    def _try(self, what: str, fn: Callable[[], object]) -> bool:
        try:
            fn()
        except (PromptingError, StoreError, OSError) as exc:
            self.notify(f"{what}: {exc}", severity="error", timeout=10)
            return False
        return True

    def use_template(self) -> None:
        t = self.current()
        if t is None:
            return

        def filled(result: FilledPrompt | None) -> None:
            if result is not None:
                self.dismiss(result)

        self.app.push_screen(TemplateFormScreen(t, self.selection), filled)

    def action_new(self) -> None:
        def saved(name: str | None) -> None:
            if name:
                self.refresh_list(select=name)

        self.app.push_screen(TemplateEditScreen(None), saved)

    def action_edit(self) -> None:
        t = self.current()
        if t is None:
            return
        if t.builtin:
            self.notify(_("{name!r} is built in and read-only: press d to duplicate it, then "
                          "edit the copy.", name=t.name), severity="warning")
            return

        def saved(name: str | None) -> None:
            if name:
                self.refresh_list(select=name)

        self.app.push_screen(TemplateEditScreen(t), saved)

    def action_duplicate(self) -> None:
        t = self.current()
        if t is None:
            return
        made: list[Template] = []
        if self._try(_("Could not duplicate"), lambda: made.append(self.library.duplicate(t.name))):
            self.refresh_list(select=made[0].name)
            self.notify(_("Duplicated as {name!r}: press e to edit it.", name=made[0].name))

    def action_delete(self) -> None:
        t = self.current()
        if t is None:
            return
        if t.builtin:
            self.notify(_("{name!r} is built in and cannot be deleted.",
                          name=t.name), severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes and self._try(_("Could not delete"), lambda: self.library.delete(t.name)):
                self.refresh_list()
                self.notify(_("Deleted template {name!r}.", name=t.name))

        self.app.push_screen(ConfirmScreen(_("Delete template"),
                                           _("Delete {name!r}?", name=t.name)), answer)

    def action_import_file(self) -> None:
        def chosen(path: str | None) -> None:
            if not path:
                return
            added: list[Template] = []
            if self._try(_("Could not import"),
                         lambda: added.extend(self.library.import_file(path))):
                self.refresh_list(select=added[0].name if added else None)
                self.notify(n_("Imported {count} template.", "Imported {count} templates.",
                               len(added)))

        self.app.push_screen(TextInputScreen(
            _("Import templates"), hint=_("A JSON or YAML file of templates. Enter: import   esc: "
                                       "cancel"), placeholder="~/templates.json"), chosen)

    def action_export_file(self) -> None:
        t = self.current()
        if t is None:
            return

        def chosen(path: str | None) -> None:
            if path and self._try(_("Could not export"), lambda: self.library.export_file(
                    [t.name], _expand(path))):
                self.notify(_("Exported {name!r} to {path}.", name=t.name, path=path))

        self.app.push_screen(TextInputScreen(
            _("Export {name}", name=t.name), f"{t.name}.json",
            hint=_("The file to write (JSON, or YAML with .yaml). Enter: export   esc: cancel")),
            chosen)

    def action_close(self) -> None:
        self.dismiss(None)


def _expand(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser())


# --- create and edit ---------------------------------------------------------------------------


def parse_variables(text: str, body: str, old: tuple[Variable, ...] = ()) -> tuple[Variable, ...]:
    """Variables from lines ``name | default | description`` (an empty default: required);
    a slot of the body not listed becomes a required variable."""
    out: dict[str, Variable] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|", 2)]
        name = parts[0]
        default = parts[1] if len(parts) > 1 and parts[1] else None
        description = parts[2] if len(parts) > 2 else ""
        previous = next((v for v in old if v.name == name), None)
        out[name] = Variable(name, description, default,
                             previous.multiline if previous else False)
    try:
        from_body = variables_from_body(body)
    except TemplateError:
        from_body = ()
    for var in from_body:
        out.setdefault(var.name, var)
    return tuple(out.values())


def variables_text(variables: tuple[Variable, ...]) -> str:
    return "\n".join(f"{v.name} | {v.default or ''} | {v.description}".rstrip(" |")
                     if v.description or v.default else v.name for v in variables)


class TemplateEditScreen(ModalScreen[str | None]):
    """Create (``template=None``) or edit a user template; returns its name once saved."""

    DEFAULT_CSS = (
        "TemplateEditScreen {" + MODAL_CSS + """
        & > Vertical { width: 100; }
        .edit-row { height: auto; }
        .edit-row Input { width: 1fr; }
        #edit-body { height: 8; }
        #edit-variables { height: 4; }
        #edit-error { color: $text-error; }
    }"""
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", N_("Save"), id="template_edit.save", priority=True),
        Binding("escape", "cancel", N_("Cancel"), id="template_edit.cancel"),
    ]

    def __init__(self, template: Template | None) -> None:
        super().__init__()
        self.template = template

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        t = self.template
        with Vertical() as box:
            box.border_title = _("Edit template {name}", name=t.name) if t else _("New template")
            with Horizontal(classes="edit-row"):
                yield Input(t.name if t else "", placeholder=_("name, like email-reply"),
                            id="edit-name")
                yield Input(t.title if t else "", placeholder=_("title"), id="edit-title")
            with Horizontal(classes="edit-row"):
                yield Input(", ".join(t.tags) if t else "", placeholder=_("tags, comma-separated"),
                            id="edit-tags")
                yield Input(t.lang if t else "en", placeholder=_("language (en, es…)"),
                            id="edit-lang")
            yield Input(t.description if t else "", placeholder=_("description"),
                        id="edit-description")
            yield Static(_("Body: {{ variable }} marks a slot"), classes="modal-hint")
            yield TextArea(t.body if t else "", id="edit-body", soft_wrap=True)
            yield Static(_("Variables, one a line: name | default | description (no default: "
                           "required)"), classes="modal-hint")
            yield TextArea(variables_text(t.variables) if t else "", id="edit-variables")
            yield Static(id="edit-error", markup=False)
            yield Static(_("ctrl+s: save   esc: cancel"), classes="modal-hint")
            with Horizontal(classes="modal-buttons"):
                yield Button(_("Cancel"), id="cancel")
                yield Button(_("Save"), id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#edit-name", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def _value(self, widget_id: str) -> str:
        return self.query_one(widget_id, Input).value.strip()

    def action_save(self) -> None:
        library = TemplateLibrary(self.lmdesk.store)
        body = self.query_one("#edit-body", TextArea).text
        old = self.template.variables if self.template else ()
        variables = parse_variables(self.query_one("#edit-variables", TextArea).text, body, old)
        fields = dict(
            title=self._value("#edit-title"), description=self._value("#edit-description"),
            variables=variables, lang=self._value("#edit-lang") or "en",
            tags=[tag for tag in self._value("#edit-tags").split(",") if tag.strip()],
        )
        name = self._value("#edit-name")
        try:
            if self.template is None:
                saved = library.create(name, body, **fields)  # type: ignore[arg-type]
            else:
                saved = library.update(self.template.name, name=name, body=body, **fields)
        except (PromptingError, StoreError) as exc:
            self.query_one("#edit-error", Static).update(Content(f"⚠ {exc}"))
            return
        self.notify(_("Saved template {name!r}.", name=saved.name))
        self.dismiss(saved.name)

    def action_cancel(self) -> None:
        self.dismiss(None)
