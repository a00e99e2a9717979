"""The model switcher: local models (also those of Ollama, LM Studio and the like, used in
place) with their verdict on this machine, the catalogue with the right quantization for it,
downloads.

Listing reads GGUF headers (through the header cache), sizes every model against what is
free now and predicts its speed here (``tui.models.speed``, calibrated from this machine's
own runs), in a thread worker; the table is drawn from that on the UI thread. The verdict is
memory and speed together (``tui.models.choice``). Loading goes through the app's
ModelManager (``LmdeskApp.use_model``); a model that clearly will not fit (red) is refused
with the reason unless the user insists.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static, TabbedContent, TabPane

from tui.app.screens.compare import CompareScreen
from tui.app.screens.confirm import ConfirmScreen
from tui.i18n import N_, _
from tui.models.calibration import speed_model
from tui.models.catalogue import CatalogueEntry, load_catalogue
from tui.models.choice import (
    Assessment,
    CatalogueChoice,
    assess,
    choose_quantization,
    ctx_label,
    fmt_tok_s,
)
from tui.models.download import DownloadProgress, DownloadResult
from tui.models.fit import FitEstimate, Resources, verdict_name
from tui.models.listing import LocalModel, list_models
from tui.models.speed import SpeedModel, model_key
from tui.session.usage import usage_of

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

GiB = 1024**3
MiB = 1024**2
FIT_ORDER = {"green": 0, "amber": 1, "red": 2}
FILTERS = ("all", "fits", "green")
SORTS = ("fit", "name", "size")
SHOWN = {"all": N_("all"), "fits": N_("fits"), "green": N_("green"), "fit": N_("fit"),
         "name": N_("name"), "size": N_("size")}
"""The filters' and sorts' names as the screen says them."""


def size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / GiB:.1f}G" if n >= GiB else f"{n / MiB:.0f}M"


def params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def fit_cell(a: Assessment | None) -> str:
    if a is None:
        return "?"
    fit = a.fit
    return f"{verdict_name(a.verdict)} {size(fit.ram_bytes - fit.reclaimable_bytes)}" + (
        f"+{size(fit.vram_bytes)}V" if fit.vram_bytes else ""
    )


def speed_cell(a: Assessment | None) -> str:
    return fmt_tok_s(a.tok_s) if a is not None else "-"


@dataclass(frozen=True)
class Row:
    model: LocalModel
    assessment: Assessment | None
    fit_error: str | None = None

    @property
    def fit(self) -> FitEstimate | None:
        return self.assessment.fit if self.assessment is not None else None

    @property
    def verdict(self) -> str | None:
        return self.assessment.verdict if self.assessment is not None else None


class ModelsScreen(Screen[None]):
    """Local models and the catalogue, with their fit; load, unload, switch, download."""

    DEFAULT_CSS = """
    ModelsScreen {
        & #models-detail {
            height: auto;
            max-height: 12;
            padding: 0 1;
            color: $foreground;
            background: $surface;
        }
        & #models-hint {
            height: 1;
            padding: 0 1;
            color: $text-muted;
        }
        & #download-box {
            height: auto;
            padding: 0 1;
            display: none;
        }
        & #download-box.-active {
            display: block;
        }
        & TabbedContent {
            height: 1fr;
        }
        & DataTable {
            height: 1fr;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Back"), id="models.close"),
        Binding("u", "unload", N_("Unload"), id="models.unload"),
        Binding("f", "cycle_filter", N_("Filter by fit"), id="models.filter"),
        Binding("s", "cycle_sort", N_("Sort"), id="models.sort"),
        Binding("d", "download", N_("Download"), id="models.download"),
        Binding("c", "cancel_download", N_("Cancel download"), id="models.cancel"),
        Binding("r", "refresh", N_("Refresh"), id="models.refresh"),
        Binding("e", "endpoints", N_("Endpoints"), id="models.endpoints", show=True),
        Binding("p", "profiles", N_("Profiles"), id="models.profiles", show=True),
    ]

    class Listed(Message):
        def __init__(self, rows: list[Row], catalogue: list[CatalogueChoice],
                     resources: Resources, error: str | None = None) -> None:
            super().__init__()
            self.rows = rows
            self.catalogue = catalogue
            self.resources = resources
            self.error = error

    class Measured(Message):
        def __init__(self, rss: dict[str, int]) -> None:
            super().__init__()
            self.rss = rss

    class DownloadUpdate(Message):
        def __init__(self, progress: DownloadProgress) -> None:
            super().__init__()
            self.progress = progress

    class DownloadEnded(Message):
        def __init__(self, result: DownloadResult | None, error: str | None) -> None:
            super().__init__()
            self.result = result
            self.error = error

    def __init__(self, resources: Callable[[], Resources] | None = None,
                 speed: Callable[[], SpeedModel] | None = None) -> None:
        super().__init__(id="models-screen")
        self._resources = resources or Resources.current
        self._speed = speed
        self.rows: list[Row] = []
        self.catalogue: list[CatalogueChoice] = []
        self.rss: dict[str, int] = {}
        self.filter = "all"
        self.sort = "fit"
        self.listed = False
        self._cancel: threading.Event | None = None

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="tab-local"):
            with TabPane(_("Local models"), id="tab-local"):
                yield DataTable(id="local-models", cursor_type="row", zebra_stripes=True)
            with TabPane(_("Catalogue"), id="tab-catalogue"):
                yield DataTable(id="catalogue", cursor_type="row", zebra_stripes=True)
        yield Static(_("Reading the models…"), id="models-detail", markup=False)
        with Vertical(id="download-box"):
            yield Static("", id="download-label", markup=False)
            yield ProgressBar(id="download-bar", show_eta=False)
        yield Static(
            _("enter load/use · d catalogue/download · u unload · f filter · s sort · c cancel "
              "· esc back"),
            id="models-hint",
        )
        yield Footer()

    def on_mount(self) -> None:
        local = self.query_one("#local-models", DataTable)
        # names are cut to a width that leaves the verdict and speed on an 80-column screen
        local.add_column("")
        local.add_column(_("name"), width=22)
        local.add_columns(_("fit (RAM)"), "tok/s", "n_ctx", _("size"), _("quant"), _("params"),
                          _("from"), _("arch"), _("trained"), _("chat"), "gpu", _("replies"),
                          _("measured"))
        cat = self.query_one("#catalogue", DataTable)
        cat.add_column(_("name"), width=24)
        cat.add_columns(_("best here"), _("fit"), "tok/s", "n_ctx", _("size"), _("can do"),
                        _("checked"), _("repo"))
        self.watch(self.lmdesk, "model_state", self._model_state_changed, init=False)
        self._list()
        local.focus()

    # -- workers -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="models-list", exit_on_error=False)
    def _list(self) -> None:
        app = self.lmdesk
        settings = app.settings
        try:
            res = self._resources()
            speed = self._speed() if self._speed is not None else speed_model(app.paths.data_dir)
            models = list_models(list(settings.model_dirs), cache_dir=app.paths.cache_dir)
            rows = []
            for m in models:
                judged, error = None, m.error
                if m.shape is not None and m.error is None:
                    try:
                        judged = assess(m.shape, res, speed, n_ctx=settings.n_ctx,
                                        n_gpu_layers=settings.n_gpu_layers,
                                        key=model_key(m.path, m.size_bytes),
                                        reading_speed=settings.reading_speed)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                rows.append(Row(m, judged, error))
            catalogue = [choose_quantization(e, res, speed, n_ctx=settings.n_ctx,
                                             reading_speed=settings.reading_speed)
                         for e in load_catalogue(app.paths.config_dir)]
        except Exception as exc:  # a broken folder or cache must not kill the app
            self.post_message(self.Listed([], [], Resources(0, 0), f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Listed(rows, catalogue, res))
        self._measure()

    @work(thread=True, exclusive=True, group="models-measure", exit_on_error=False)
    def _measure(self) -> None:
        import psutil

        rss: dict[str, int] = {}
        for entry in self.lmdesk.session.loaded():
            pid = entry.info.worker_pid
            if pid > 0 and entry.model.params is not None:
                with contextlib.suppress(psutil.Error):
                    rss[entry.model.params.model_path] = psutil.Process(pid).memory_info().rss
        self.post_message(self.Measured(rss))

    def on_models_screen_listed(self, event: ModelsScreen.Listed) -> None:
        event.stop()
        if event.error:
            self.lmdesk.notify(_("Could not list the models: {error}",
                                 error=event.error), severity="error")
        self.rows, self.catalogue = event.rows, event.catalogue
        self.listed = True
        self.refresh_tables()

    def on_models_screen_measured(self, event: ModelsScreen.Measured) -> None:
        event.stop()
        self.rss = event.rss
        self.refresh_tables()

    def _model_state_changed(self, _state: str) -> None:
        self.refresh_tables()
        self._measure()

    # -- drawing -----------------------------------------------------------------------------

    def visible_rows(self) -> list[Row]:
        rows = list(self.rows)
        if self.filter == "fits":
            rows = [r for r in rows if r.verdict is not None and r.verdict != "red"]
        elif self.filter == "green":
            rows = [r for r in rows if r.verdict == "green"]
        if self.sort == "name":
            rows.sort(key=lambda r: r.model.name.lower())
        elif self.sort == "size":
            rows.sort(key=lambda r: r.model.size_bytes)
        else:
            rows.sort(key=lambda r: (FIT_ORDER.get(r.verdict or "", 3),
                                     -(r.assessment.tok_s if r.assessment else 0.0)))
        return rows

    def refresh_tables(self) -> None:
        if not self.is_mounted:
            return
        usage = usage_of(self.lmdesk.store)
        loaded = self._loaded_paths()
        now = self.lmdesk.current
        current = now.model.params.model_path if now and now.model.params else ""
        table = self.query_one("#local-models", DataTable)
        keep = table.cursor_row
        table.clear()
        for row in self.visible_rows():
            m, a = row.model, row.assessment
            mark = "▶" if m.path == current and m.path in loaded else ("●" if m.path in loaded
                                                                        else "")
            use = usage.get(m.name, {})
            table.add_row(
                mark, m.name, fit_cell(a) if not m.error else "unreadable", speed_cell(a),
                ctx_label(a.context.n_ctx) if a else "-", size(m.size_bytes),
                m.quantization or "-", params(m.n_params), m.source, m.architecture or "-",
                str(m.context_length or "-"), "yes" if m.has_chat_template else "no",
                str(a.fit.n_gpu_layers) if a else "-",
                str(use.get("replies", "")),
                f"{use['mean_tokens_per_s']:.1f}" if "mean_tokens_per_s" in use else "",
                key=m.path,
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        cat = self.query_one("#catalogue", DataTable)
        if not cat.row_count:
            for choice in self.catalogue:
                entry, best = choice.entry, choice.best
                caps = ",".join(entry.capabilities.labels())
                checked = entry.verified or "no"
                if best is None:
                    cat.add_row(entry.name, "-", "red" if entry.has_files else _("no GGUF"), "-",
                                "-", "-", caps, checked, entry.repo_id, key=entry.id)
                    continue
                b = best.assessment
                cat.add_row(entry.name, best.quantization, verdict_name(b.verdict), speed_cell(b),
                            ctx_label(b.context.n_ctx), size(best.size), caps, checked,
                            entry.repo_id, key=entry.id)
        self._show_detail()

    def _loaded_paths(self) -> set[str]:
        """The model files loaded now: the session's (a file loaded plainly or through a
        profile counts either way) and the model B a compare view under this screen holds."""
        loaded = {m.model.params.model_path for m in self.lmdesk.session.loaded()
                  if m.model.params is not None}
        loaded.update(s.model_b_path for s in self.app.screen_stack
                      if isinstance(s, CompareScreen) and s.model_b_path)
        return loaded

    def selected_row(self) -> Row | None:
        table = self.query_one("#local-models", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return next((r for r in self.rows if r.model.path == key), None)

    def selected_entry(self) -> CatalogueChoice | None:
        table = self.query_one("#catalogue", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return next((c for c in self.catalogue if c.entry.id == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self._show_detail()

    def _on_catalogue_tab(self) -> bool:
        return self.query_one(TabbedContent).active == "tab-catalogue"

    def _show_detail(self) -> None:
        detail = self.query_one("#models-detail", Static)
        if not self.listed:
            return
        if self._on_catalogue_tab():
            picked = self.selected_entry()
            if picked is None:
                detail.update(_("The catalogue is empty."))
                return
            detail.update(catalogue_detail(picked))
            return
        row = self.selected_row()
        if row is None:
            detail.update(_("No local model (filter: {filter}). Add folders with model_dirs in "
                            "config.toml, or download one.", filter=_(SHOWN[self.filter])))
            return
        m = row.model
        where = _(" · from {source}", source=m.source) + (f" ({m.origin})" if m.origin else "")
        lines = [f"{m.name}  {m.path}{where}"]
        a = row.assessment
        if a is not None:
            lines.append(f"{verdict_name(a.verdict)}: {a.reason}")
            lines.append(_("speed: about {fmt_tok_s} tok/s writing, {prompt_tok_s:.0f} tok/s "
                           "reading ({basis})",
                           fmt_tok_s=fmt_tok_s(a.speed.tok_s), prompt_tok_s=a.speed.prompt_tok_s,
                           basis=a.speed.basis))
            lines.append(_("context: {reason}", reason=a.context.reason))
            lines.append(a.fit.summary())
        if row.fit_error:
            lines.append(_("unreadable: {fit_error}", fit_error=row.fit_error))
        if m.app_parameters:
            lines.append(_("{source} parameters (not applied): {app_parameters}",
                           source=m.source, app_parameters=m.app_parameters))
        if m.path in self.rss:
            est = size(a.fit.ram_bytes) if a else "?"
            lines.append(_("loaded: worker RSS {size} (estimate {est})",
                           size=size(self.rss[m.path]), est=est))
        lines.append(_("filter {filter} · sort {sort}", filter=_(SHOWN[self.filter]),
                       sort=_(SHOWN[self.sort])))
        detail.update("\n".join(lines))

    # -- actions -----------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_cycle_filter(self) -> None:
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]
        self.refresh_tables()

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.refresh_tables()

    def action_refresh(self) -> None:
        self._list()

    def action_endpoints(self) -> None:
        """Remote endpoints (URL, key, default model) and their models."""
        from tui.app.screens.endpoints import EndpointsScreen

        self.app.push_screen(EndpointsScreen())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "catalogue":
            self.action_download()
        else:
            self.choose(self.selected_row())

    def choose(self, row: Row | None, *, insist: bool = False) -> None:
        """Load ``row``'s model and use it for the open conversation (asks first when red)."""
        if row is None:
            return
        if row.model.error or row.fit is None:
            why = row.model.error or row.fit_error
            self.lmdesk.notify(_("{name} cannot be read: {why}",
                                 name=row.model.name, why=why), severity="error")
            return
        if row.fit.verdict == "red" and not insist:
            reason = row.fit.reason

            def answer(yes: bool | None) -> None:
                if yes:
                    self.choose(row, insist=True)
                else:
                    self.lmdesk.notify(_("{name} not loaded: {reason}",
                                         name=row.model.name, reason=reason),
                                       severity="warning")

            self.app.push_screen(ConfirmScreen(
                _("This model will not fit"),
                _("{name}: {reason}\n{summary}\n\nLoad it anyway?",
                  name=row.model.name, reason=row.fit.reason, summary=row.fit.summary()),
                yes=_("Load anyway"),
            ), answer)
            return
        if self.lmdesk.use_model(row.model.path, row.model.name, row.fit):
            self.lmdesk.notify(_("Loading {name} for this conversation…", name=row.model.name),
                               title=_("Models"))

    def action_profiles(self) -> None:
        """Model profiles; a new one starts from the selected model."""
        from tui.app.screens.profiles import ProfilesScreen

        row = self.selected_row()
        self.app.push_screen(ProfilesScreen(row.model.path if row else "",
                                            row.model.name if row else ""))

    def action_unload(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        keys = [m.key for m in self.lmdesk.session.loaded()
                if m.model.params is not None and m.model.params.model_path == str(row.model.path)]
        if not keys:
            self.lmdesk.notify(_("{name} is not loaded.", name=row.model.name))
            return
        for key in keys:
            self.lmdesk.unload_model(key)

    # -- downloads ---------------------------------------------------------------------------

    def action_download(self) -> None:
        if not self._on_catalogue_tab():
            self.query_one(TabbedContent).active = "tab-catalogue"
            return
        picked = self.selected_entry()
        if picked is None:
            return
        if self._cancel is not None:
            self.lmdesk.notify(_("A download is already running (c cancels it)."))
            return
        entry = picked.entry
        if not entry.has_files:
            self.lmdesk.notify(_("{name}: no GGUF file to download. {notes}",
                                 name=entry.name, notes=entry.notes),
                               severity="warning")
            return
        filename = picked.best.file if picked.best is not None else entry.file().file
        self._cancel = threading.Event()
        box = self.query_one("#download-box")
        box.add_class("-active")
        self.query_one("#download-label", Static).update(_("Starting {filename}…",
                                                           filename=filename))
        self.query_one("#download-bar", ProgressBar).update(total=None, progress=0)
        self._download(entry, filename, self._cancel)

    def action_cancel_download(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    @work(thread=True, exclusive=True, group="model-download", exit_on_error=False)
    def _download(self, entry: CatalogueEntry, filename: str, cancel: threading.Event) -> None:
        from tui.models.download import DownloadError, download
        from tui.offline import HF_HOSTS, allow_network

        last = [0.0]

        def progress(p: DownloadProgress) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or (p.total_bytes and p.done_bytes >= p.total_bytes):
                last[0] = now
                self.post_message(self.DownloadUpdate(p))

        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        saved = os.environ.pop("HF_HUB_OFFLINE", None)
        try:
            with allow_network(endpoint, hosts=HF_HOSTS):
                result = download(entry.repo_id, filename, progress=progress, cancel=cancel)
        except DownloadError as exc:
            self.post_message(self.DownloadEnded(None, str(exc)))
        except Exception as exc:
            self.post_message(self.DownloadEnded(None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.DownloadEnded(result, None))
        finally:
            if saved is not None:
                os.environ["HF_HUB_OFFLINE"] = saved

    def on_models_screen_download_update(self, event: ModelsScreen.DownloadUpdate) -> None:
        event.stop()
        p = event.progress
        bar = self.query_one("#download-bar", ProgressBar)
        bar.update(total=p.total_bytes, progress=p.done_bytes)
        eta = f"{p.eta_s:.0f} s left" if p.eta_s is not None else _("time left unknown")
        total = size(p.total_bytes) if p.total_bytes else "?"
        self.query_one("#download-label", Static).update(
            _("{filename}: {size}/{total} · {value:.1f} MiB/s · {eta} · c cancels",
              filename=p.filename, size=size(p.done_bytes), total=total, value=p.bytes_per_s / MiB,
              eta=eta)
        )

    def on_models_screen_download_ended(self, event: ModelsScreen.DownloadEnded) -> None:
        event.stop()
        self._cancel = None
        self.query_one("#download-box").remove_class("-active")
        if event.error:
            self.lmdesk.notify(event.error, title=_("Download failed"), severity="error",
                               timeout=15)
            return
        if event.result is not None:
            self.lmdesk.notify(_("{filename} is in {parent}",
                                 filename=event.result.filename, parent=event.result.path.parent),
                               title=_("Downloaded"))
        self._list()


def catalogue_detail(choice: CatalogueChoice) -> str:
    """The catalogue entry under the cursor: what to take here, and every other file."""
    e = choice.entry
    checked = f"checked {e.verified}" if e.verified else _("not checked on the Hub")
    langs = ", ".join(e.capabilities.languages)
    lines = [f"{e.name} · {e.repo_id} · {e.license} · {checked}",
             _("can do: {value} · languages: {langs}",
               value=', '.join(e.capabilities.labels()) or '-', langs=langs)]
    if not choice.options:
        lines.append(e.notes)
        return "\n".join(lines)
    best = choice.best
    lines.append(_("best here: {line}", line=choice.line()) + (f" ({best.file})" if best else ""))
    for o in choice.options:
        if o is best:
            continue
        lines.append(f"  {o.quantization:7} {size(o.size):>6}  {o.assessment.line()}")
    lines.append(_("d: download the best here (needs the network) · c: cancel"))
    return "\n".join(lines)
