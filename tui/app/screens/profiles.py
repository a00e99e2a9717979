"""Model profiles (``p`` in the model switcher): list with usage, create, edit, delete, use.

A profile is a nickname plus load parameters (n_ctx, GPU layers, threads, a LoRA adapter),
sampling values and notes for one model (``tui/models/profiles.py``). "Use" loads the model
with the profile's parameters for the open conversation (``LmdeskApp.use_profile``). A profile
with RPC workers shows how its model would be split over them (asked in a thread worker:
``tui.models.split.judge_split``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from tui.app.screens.confirm import ConfirmScreen
from tui.display import count
from tui.i18n import N_, _
from tui.models.profiles import SAMPLING_KEYS, Profile, ProfileError, ProfileLibrary

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

LOAD_FIELDS = ("n_ctx", "n_gpu_layers", "n_threads")


def _opt_int(name: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ProfileError(_("{name} must be a whole number, got {text!r}",
                             name=name, text=text)) from None


def _placeholder(key: str) -> str:
    if key == "rpc":
        return _("host:port, host:port (lmdesk rpc-worker; none: this machine only)")
    return _("(engine default)") if key in LOAD_FIELDS or key in SAMPLING_KEYS else ""


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


class ProfileFormScreen(ModalScreen[Profile | None]):
    """Create or edit a profile; returns the profile to save (validated by the caller)."""

    DEFAULT_CSS = """
    ProfileFormScreen {
        align: center middle;
        & > VerticalScroll {
            width: 90; max-width: 95%; height: auto; max-height: 95%;
            border: thick $primary; background: $surface; padding: 0 1;
        }
        & Input { width: 1fr; }
        & Label { width: 16; padding: 1 1 0 0; }
        & Horizontal { height: auto; }
        & #profile-form-error { color: $error; height: auto; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", N_("Save"), show=False, id="profile_form.save"),
        Binding("escape", "cancel", N_("Cancel"), show=False, id="profile_form.cancel"),
    ]

    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile

    def _fields(self) -> list[tuple[str, str, str]]:
        p = self.profile
        rows = [
            ("nickname", "nickname", p.nickname),
            ("model_path", _("model (GGUF)"), p.model_path),
            ("model_name", _("model name"), p.model_name),
            ("n_ctx", "n_ctx", _cell(p.n_ctx).replace("-", "")),
            ("n_gpu_layers", _("GPU layers"),
             "" if p.n_gpu_layers is None else str(p.n_gpu_layers)),
            ("n_threads", "threads", _cell(p.n_threads).replace("-", "")),
            ("lora_path", _("LoRA GGUF"), p.lora_path or ""),
            ("rpc", _("RPC workers"), ", ".join(p.rpc)),
        ]
        rows += [(k, k, str(p.sampling.get(k, ""))) for k in SAMPLING_KEYS]
        rows.append(("notes", "notes", p.notes))
        return rows

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(_("New profile") if not self.profile.id else
                         _("Edit profile {nickname}", nickname=self.profile.nickname), markup=False)
            for key, label, value in self._fields():
                with Horizontal():
                    yield Label(label)
                    yield Input(value, id=f"pf-{key}",
                                placeholder=_placeholder(key))
            yield Static("", id="profile-form-error", markup=False)
            with Horizontal():
                yield Button(_("Save (ctrl+s)"), id="pf-save", variant="primary")
                yield Button(_("Cancel (esc)"), id="pf-cancel")

    def on_mount(self) -> None:
        self.query_one("#pf-nickname", Input).focus()

    def value(self, key: str) -> str:
        return self.query_one(f"#pf-{key}", Input).value

    def read(self) -> Profile:
        """The profile the form describes; ``ProfileError`` for a bad number."""
        sampling: dict[str, Any] = {}
        for key in SAMPLING_KEYS:
            text = self.value(key).strip()
            if text:
                sampling[key] = text
        return Profile(
            id=self.profile.id, nickname=self.value("nickname"),
            model_path=self.value("model_path").strip(),
            model_name=self.value("model_name").strip(),
            n_ctx=_opt_int("n_ctx", self.value("n_ctx")),
            n_gpu_layers=_opt_int(_("GPU layers"), self.value("n_gpu_layers")),
            n_threads=_opt_int("threads", self.value("n_threads")),
            lora_path=self.value("lora_path").strip() or None, sampling=sampling,
            rpc=tuple(a.strip() for a in self.value("rpc").split(",") if a.strip()),
            notes=self.value("notes"), usage=self.profile.usage,
        )

    def action_save(self) -> None:
        try:
            profile = self.read()
        except ProfileError as exc:
            self.query_one("#profile-form-error", Static).update(str(exc))
            return
        self.dismiss(profile)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "pf-save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()


class ProfilesScreen(Screen[None]):
    """The profiles with their usage; n new, e edit, delete, enter use, esc back."""

    DEFAULT_CSS = """
    ProfilesScreen {
        & DataTable { height: 1fr; }
        & #profiles-detail { height: auto; max-height: 14; padding: 0 1; background: $surface; }
        & #profiles-hint { height: 1; padding: 0 1; color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Back"), show=False, id="profiles.close"),
        Binding("n", "new", N_("New"), show=False, id="profiles.new"),
        Binding("e", "edit", N_("Edit"), show=False, id="profiles.edit"),
        Binding("delete,x", "delete", N_("Delete"), show=False, id="profiles.delete"),
        Binding("u", "use", N_("Use"), show=False, id="profiles.use"),
    ]

    class SplitJudged(Message):
        """How a profile's model would be split over its RPC workers (or why not)."""

        def __init__(self, profile: Profile, lines: list[str]) -> None:
            super().__init__()
            self.profile = profile
            self.lines = lines

    def __init__(self, model_path: str = "", model_name: str = "") -> None:
        super().__init__(id="profiles-screen")
        self.default_path = model_path
        self.default_name = model_name
        self.profiles: list[Profile] = []
        self._split_lines: dict[tuple[str, float], list[str]] = {}
        """By (profile id, last update): an edited profile is judged again."""
        self._asking: set[tuple[str, float]] = set()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def library(self) -> ProfileLibrary:
        return ProfileLibrary(self.lmdesk.store)

    def compose(self) -> ComposeResult:
        yield DataTable(id="profiles-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="profiles-detail", markup=False)
        yield Static(_("enter/u use for this conversation · n new · e edit · x delete · esc back"),
                     id="profiles-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", _("nickname"), _("model"), "n_ctx", "gpu", "LoRA", "temp",
                          _("replies"), "tok/s", "ttft")
        self.refresh_table()
        self.watch(self.lmdesk, "model_state", self._model_state_changed, init=False)
        table.focus()

    def _model_state_changed(self, _state: str) -> None:
        self.refresh_table()

    def refresh_table(self) -> None:
        self.profiles = []
        with self.lmdesk.guard(_("Could not read the profiles")):
            self.profiles = self.library.list()
        current = self.lmdesk.profile
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for p in self.profiles:
            u = p.usage
            table.add_row(
                "▶" if current is not None and current.id == p.id else "", p.nickname,
                p.model_name, _cell(p.n_ctx), _cell(p.n_gpu_layers),
                "yes" if p.lora_path else "", _cell(p.sampling.get("temperature")),
                str(u.replies) if u.replies else "",
                f"{u.mean_tps:.1f}" if u.replies else "",
                f"{u.mean_ttft:.2f}s" if u.replies else "", key=p.id,
            )
        if table.row_count:
            table.move_cursor(row=min(max(keep, 0), table.row_count - 1))
        self._show_detail()

    def selected(self) -> Profile | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return next((p for p in self.profiles if p.id == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#profiles-detail", Static)
        p = self.selected()
        if p is None:
            detail.update(_("No profile yet: n makes one for the model selected in the switcher."))
            return
        sampling = ", ".join(f"{k} {v}" for k, v in p.sampling.items()) or _("app defaults")
        lines = [f"{p.label}  {p.model_path}",
                 _("n_ctx {cell} · GPU layers {cell2} · threads {cell3} · LoRA {value}",
                   cell=_cell(p.n_ctx), cell2=_cell(p.n_gpu_layers), cell3=_cell(p.n_threads),
                   value=p.lora_path or _("none"))
                 + (f" · RPC {', '.join(p.rpc)}" if p.rpc else ""),
                 f"sampling: {sampling}"]
        if p.usage.replies:
            lines.append(_("{count} · {mean_tps:.1f} tok/s · ttft {mean_ttft:.2f} s",
                           count=count(p.usage.replies, 'reply', 'replies'),
                           mean_tps=p.usage.mean_tps, mean_ttft=p.usage.mean_ttft))
        if p.notes:
            lines.append(p.notes)
        if p.rpc:
            key = (p.id, p.updated)
            lines.extend(self._split_lines.get(key, ["RPC workers: asking them…"]))
            if key not in self._split_lines and key not in self._asking:
                self._asking.add(key)
                self._judge_split(p)
        detail.update("\n".join(lines))

    @work(thread=True, group="profile-split", exit_on_error=False)
    def _judge_split(self, profile: Profile) -> None:
        from tui.engine.gguf import GGUFError
        from tui.models.split import judge_split

        app = self.lmdesk
        try:
            lines = judge_split(profile.model_path, profile.rpc, data_dir=app.paths.data_dir,
                                n_ctx=profile.n_ctx,
                                reading_speed=app.settings.reading_speed).lines()
        except (GGUFError, OSError, ValueError) as exc:
            lines = [f"RPC workers: the split cannot be judged: {exc}"]
        self.post_message(self.SplitJudged(profile, lines))

    def on_profiles_screen_split_judged(self, event: ProfilesScreen.SplitJudged) -> None:
        event.stop()
        key = (event.profile.id, event.profile.updated)
        self._asking.discard(key)
        self._split_lines[key] = event.lines
        selected = self.selected()
        if selected is not None and (selected.id, selected.updated) == key:
            self._show_detail()

    # -- actions -----------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def _edit(self, draft: Profile) -> None:
        def saved(result: Profile | None) -> None:
            if result is None:
                return
            try:
                with self.lmdesk.guard(_("Could not save the profile")):
                    profile = self.library.save(result)
                    self.lmdesk.notify(_("Saved profile {nickname}.",
                                         nickname=profile.nickname), title=_("Profiles"))
            except ProfileError as exc:
                self.lmdesk.notify(str(exc), title=_("Profile not saved"), severity="error",
                                   timeout=12)
                self.app.push_screen(ProfileFormScreen(result), saved)  # fix and try again
                return
            self.refresh_table()

        self.app.push_screen(ProfileFormScreen(draft), saved)

    def action_new(self) -> None:
        if self.lmdesk.read_only:
            self.lmdesk.notify(_("The data folder is read-only here."), severity="warning")
            return
        self._edit(Profile(id="", nickname="", model_path=self.default_path,
                           model_name=self.default_name))

    def action_edit(self) -> None:
        profile = self.selected()
        if profile is not None:
            self._edit(profile)

    def action_delete(self) -> None:
        profile = self.selected()
        if profile is None:
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            with self.lmdesk.guard(_("Could not delete the profile")):
                try:
                    self.library.delete(profile.id)
                except ProfileError as exc:
                    self.lmdesk.notify(str(exc), severity="warning")
            self.refresh_table()

        self.app.push_screen(ConfirmScreen(_("Delete profile"),
                                           _("Delete the profile {label}?",
                                             label=profile.label)), answer)

    def action_use(self) -> None:
        profile = self.selected()
        if profile is not None and self.lmdesk.use_profile(profile):
            self.lmdesk.notify(_("Loading {label} for this conversation…", label=profile.label),
                               title=_("Profiles"))
            self.refresh_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_use()
