"""Remote endpoints (opened from the model switcher with ``e``): add, remove, refresh their
models (``GET /v1/models``, in a thread worker) and run the open conversation on one.

The endpoints live in the store's "endpoints" setting (``tui.models.endpoints``), where the
doctor reads what uses the network. A remote endpoint and downloads are lmdesk's only network
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from tui.app.screens.confirm import MODAL_CSS, ConfirmScreen
from tui.i18n import N_, _, n_
from tui.models.endpoints import Endpoint, EndpointError, EndpointLibrary

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

SEP = "\t"


class EndpointForm(ModalScreen[dict[str, str] | None]):
    """Name, URL, API key, default model; returns them, or None when cancelled."""

    DEFAULT_CSS = "EndpointForm {" + MODAL_CSS + "}"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", N_("Cancel"), id="endpoint-form.cancel", show=False),
    ]

    FIELDS = (("name", N_("name (e.g. lab-server)"), False),
              ("url", N_("URL, e.g. http://10.0.0.5:8080/v1"), False),
              ("api_key", N_("API key (optional)"), True),
              ("default_model", N_("default model (optional)"), False))

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = _("Add a remote endpoint")
            for field, placeholder, secret in self.FIELDS:
                yield Input(placeholder=_(placeholder), password=secret, id=f"ep-{field}")
            yield Static(_("Enter: next field, then add · esc: cancel"), classes="modal-hint",
                         markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        ids = [f"ep-{f}" for f, _p, _s in self.FIELDS]
        here = ids.index(event.input.id or "")
        if here + 1 < len(ids):
            self.query_one(f"#{ids[here + 1]}", Input).focus()
            return
        self.dismiss({f: self.query_one(f"#ep-{f}", Input).value.strip()
                      for f, _p, _s in self.FIELDS})

    def action_cancel(self) -> None:
        self.dismiss(None)


class EndpointsScreen(Screen[None]):
    """Each endpoint with the models it offers; enter runs the conversation on one."""

    DEFAULT_CSS = """
    EndpointsScreen {
        & #endpoints-detail {
            height: auto;
            max-height: 6;
            padding: 0 1;
            background: $surface;
        }
        & #endpoints-hint {
            height: 1;
            padding: 0 1;
            color: $text-muted;
        }
        & DataTable {
            height: 1fr;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Back"), id="endpoints.close"),
        Binding("a", "add", N_("Add"), id="endpoints.add"),
        Binding("delete,x", "remove", N_("Remove"), id="endpoints.remove"),
        Binding("r", "refresh", N_("Refresh models"), id="endpoints.refresh"),
    ]

    class Fetched(Message):
        def __init__(self, endpoint_id: str, models: list[str], error: str | None) -> None:
            super().__init__()
            self.endpoint_id = endpoint_id
            self.models = models
            self.error = error

    def __init__(self) -> None:
        super().__init__(id="endpoints-screen")
        self.models: dict[str, list[str]] = {}
        """Model names by endpoint id, from its last refresh."""
        self.errors: dict[str, str] = {}
        self.fetching: set[str] = set()

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    @property
    def library(self) -> EndpointLibrary:
        return EndpointLibrary(self.lmdesk.store)

    def compose(self) -> ComposeResult:
        yield DataTable(id="endpoints", cursor_type="row", zebra_stripes=True)
        yield Static("", id="endpoints-detail", markup=False)
        yield Static(_("enter use · a add · r refresh models · del/x remove · esc back"),
                     id="endpoints-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", _("endpoint"), _("model"), "URL")
        self.refresh_table()
        for endpoint in self.endpoints():
            self.fetch(endpoint)
        table.focus()

    def endpoints(self) -> list[Endpoint]:
        try:
            return self.library.list()
        except Exception as exc:
            self.lmdesk.notify(_("Could not read the endpoints: {exc}", exc=exc), severity="error")
            return []

    # -- the table -----------------------------------------------------------------------------

    def rows(self) -> list[tuple[Endpoint, str | None]]:
        """(endpoint, model) per row: its models once fetched, else its default model."""
        out: list[tuple[Endpoint, str | None]] = []
        for endpoint in self.endpoints():
            names = self.models.get(endpoint.id)
            if names:
                out.extend((endpoint, name) for name in names)
            else:
                out.append((endpoint, endpoint.default_model))
        return out

    def refresh_table(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        current = self.lmdesk.model_path
        from tui.models.endpoints import remote_key

        for endpoint, model in self.rows():
            if model is None:
                label = ("fetching…" if endpoint.id in self.fetching
                         else self.errors.get(endpoint.id, "(r: refresh its models)"))
            else:
                label = model
            mark = "▶" if model and remote_key(endpoint.base_url, model) == current else ""
            table.add_row(mark, endpoint.name, label, endpoint.base_url,
                          key=f"{endpoint.id}{SEP}{model or ''}")
        if table.row_count:
            table.move_cursor(row=min(max(keep, 0), table.row_count - 1))
        self._show_detail()

    def selected(self) -> tuple[Endpoint, str | None] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or ""
        except Exception:
            return None
        eid, _sep, model = key.partition(SEP)
        endpoint = next((e for e in self.endpoints() if e.id == eid), None)
        return (endpoint, model or None) if endpoint is not None else None

    def _show_detail(self) -> None:
        detail = self.query_one("#endpoints-detail", Static)
        picked = self.selected()
        if picked is None:
            detail.update(_("No remote endpoint yet: a adds one (an OpenAI-compatible server: "
                            "llama-server, Ollama, vLLM, lmdesk serve…)."))
            return
        endpoint, _model = picked
        lines = [f"{endpoint.name}  {endpoint.base_url}"
                 + (_("  (API key set)") if endpoint.api_key else "")]
        if endpoint.id in self.errors:
            lines.append(self.errors[endpoint.id])
        elif endpoint.id in self.models:
            lines.append(n_("{count} model at /v1/models", "{count} models at /v1/models",
                            len(self.models[endpoint.id])))
        lines.append(_("Chatting through it sends the conversation to that server."))
        detail.update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    # -- fetching /v1/models -------------------------------------------------------------------

    def fetch(self, endpoint: Endpoint) -> None:
        self.fetching.add(endpoint.id)
        self._fetch(endpoint)

    @work(thread=True, exit_on_error=False)
    def _fetch(self, endpoint: Endpoint) -> None:
        from tui.engine.remote import RemoteEngine

        try:
            engine = RemoteEngine(endpoint.base_url, endpoint.api_key,
                                  timeout_s=min(self.lmdesk.session.remote_timeout_s, 15.0))
            names = engine.list_models()
        except Exception as exc:  # RemoteError says what happened; anything else too
            self.post_message(self.Fetched(endpoint.id, [], str(exc) or type(exc).__name__))
            return
        self.post_message(self.Fetched(endpoint.id, names, None))

    def on_endpoints_screen_fetched(self, event: EndpointsScreen.Fetched) -> None:
        event.stop()
        self.fetching.discard(event.endpoint_id)
        if event.error:
            self.errors[event.endpoint_id] = event.error
            self.models.pop(event.endpoint_id, None)
            self.lmdesk.notify(event.error, title=_("Endpoint unreachable"), severity="error",
                               timeout=12)
        else:
            self.errors.pop(event.endpoint_id, None)
            self.models[event.endpoint_id] = event.models
        self.refresh_table()

    # -- actions -------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        picked = self.selected()
        targets = [picked[0]] if picked is not None else self.endpoints()
        for endpoint in targets:
            self.fetch(endpoint)
        self.refresh_table()

    def action_add(self) -> None:
        if self.lmdesk.read_only:
            self.lmdesk.notify(_("The data folder is read-only here."), severity="warning")
            return
        self.app.push_screen(EndpointForm(), self._added)

    def _added(self, values: dict[str, Any] | None) -> None:
        if not values:
            return
        try:
            endpoint = self.add_endpoint(values.get("name", ""), values.get("url", ""),
                                         values.get("api_key"), values.get("default_model"))
        except EndpointError as exc:
            self.lmdesk.notify(str(exc), title=_("Endpoint not added"), severity="error")
            return
        if endpoint is not None:
            self.lmdesk.notify(_("Added {name}; asking it for its models…", name=endpoint.name),
                               title=_("Endpoints"))

    def add_endpoint(self, name: str, url: str, api_key: str | None = None,
                     default_model: str | None = None) -> Endpoint | None:
        """Save an endpoint and fetch its models (raises ``EndpointError`` on a bad URL or a
        key no HTTP request can carry)."""
        if api_key and not all(33 <= ord(ch) < 127 for ch in api_key):
            raise EndpointError(_("the API key holds characters an HTTP header cannot carry "
                                  "(spaces, accents, other scripts): keys are plain ASCII; "
                                  "check it was pasted whole"))
        endpoint = None
        with self.lmdesk.guard(_("Could not save the endpoint")):
            endpoint = self.library.add(name, url, api_key, default_model)
        if endpoint is not None:
            self.fetch(endpoint)
            self.refresh_table()
        return endpoint

    def action_remove(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        endpoint = picked[0]

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            with self.lmdesk.guard(_("Could not remove the endpoint")):
                self.library.remove(endpoint.id)
                self.models.pop(endpoint.id, None)
                self.errors.pop(endpoint.id, None)
            self.refresh_table()

        self.app.push_screen(ConfirmScreen(
            _("Remove endpoint"), _("Remove {name} ({base_url})?",
                                 name=endpoint.name, base_url=endpoint.base_url), yes=_("Remove"),
        ), answer)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.choose(self.selected())

    def choose(self, picked: tuple[Endpoint, str | None] | None) -> None:
        """Run the open conversation on the picked endpoint model."""
        if picked is None:
            return
        endpoint, model = picked
        if model is None:
            self.lmdesk.notify(_("{name}: no model known yet; r asks it for its models.",
                                 name=endpoint.name), severity="warning")
            return
        if self.lmdesk.use_endpoint(endpoint, model):
            self.lmdesk.notify(_("This conversation now runs on {model} at {name} ({host}): it "
                                 "is sent over the network.",
                                 model=model, name=endpoint.name, host=endpoint.host),
                               title=_("Remote model"))
            self.refresh_table()
