"""The right-hand panel: the model, RAM (system, the app, each model worker), CPU, VRAM, the
reply speed (live while streaming, a sparkline of recent replies), ttft, the context used.

Below ``WIDE_FROM`` columns (80x24 over SSH) there is no room for a column: the panel is one
status line under the chat (model, RAM, tok/s, ctx), and ``toggle()`` (f12) lays the full
panel over the right of the chat instead of collapsing it (themes/lmdesk.tcss places both).

The system is sampled about once a second in a thread worker (group "monitor") that posts a
``MonitorPanel.Sampled`` message; the UI thread only formats. Nothing is sampled while the panel
is collapsed or hidden, so an idle app costs next to nothing. When the model runs elsewhere too
(RPC workers, a remote endpoint), those machines are asked on the same timer in a worker of
their own (group "monitor-elsewhere", one question at a time: a slow server never delays the
local figures), also only while the panel is visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Static

from tui.app.widgets.steady_static import SteadyStatic
from tui.i18n import N_, _, format_number
from tui.monitor import MonitorSnapshot, RateSnapshot, sparkline
from tui.monitor.elsewhere import ElsewhereSample
from tui.monitor.elsewhere import rows as elsewhere_rows

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp

SAMPLE_S = 1.0
GiB = 1024**3
MiB = 1024**2
WIDE_FROM = 120
"""From this many columns the panel is a column of its own (the app's -wide breakpoint)."""
ROW_WIDTH = 28
"""Characters in a row of the full panel (its width less the padding)."""
Target = tuple[tuple[str, ...], str, "str | None"]
"""What the monitor asks beyond this machine: RPC workers, an endpoint URL and its key."""


def reply_figures(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The figures of a stored reply the monitor shows. A compare run keeps one set per model
    under ``compare``: the first model's (the app's own) that has any."""
    if not stats or not isinstance(stats.get("compare"), dict):
        return stats
    results = stats["compare"].get("results") or []
    return next((r for r in results if isinstance(r, dict) and r.get("generated_tokens")),
                None)


def _clip(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def _tokens(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{format_number(n / 1000, 1)}k" if n >= 1000 else str(n)


def ctx_bar(used: int, total: int, width: int = 8) -> str:
    if total <= 0:
        return ""
    filled = min(width, round(width * used / total))
    return "█" * filled + "░" * (width - filled)


def size(n: int) -> str:
    return f"{format_number(n / GiB, 1)} GiB" if n >= GiB else f"{format_number(n / MiB, 0)} MiB"


def _gib(n: int) -> str:
    return f"{format_number(n / GiB, 1)}"



ROW_LABELS = (N_("model"), N_(" model"), N_("persona"), N_("status"), N_("app"), N_("gen"),
              N_("think"), N_("prompt"), N_("ctx"))
"""The panel's row labels: kept in English as the rows' keys, shown translated."""


def _shown_label(label: str) -> str:
    shown = _(label) if label.strip() else label
    return f"{shown:<7}"

class MonitorPanel(Vertical):
    DEFAULT_CSS = """
    MonitorPanel {
        height: 1fr;
        padding: 0 1;
        & > .monitor-title {
            color: $text-muted;
        }
        & > #monitor-body {
            color: $foreground;
        }
        &.-collapsed {
            padding: 0;
            & > #monitor-body {
                display: none;
            }
        }
        &.-compact > .monitor-title {
            display: none;
        }
    }
    """

    class Sampled(Message):
        """A system sample, taken off the UI thread (None: it failed)."""

        def __init__(self, snapshot: MonitorSnapshot | None) -> None:
            super().__init__()
            self.snapshot = snapshot

    class SampledElsewhere(Message):
        """The RPC workers' and the remote server's figures, asked off the UI thread."""

        def __init__(self, target: Target, sample: ElsewhereSample) -> None:
            super().__init__()
            self.target = target
            self.sample = sample

    model_name: reactive[str] = reactive("")
    load_state: reactive[str] = reactive("loading")
    """"loading", "ready" or "failed"."""
    tokens_per_s: reactive[float | None] = reactive(None)
    ttft_s: reactive[float | None] = reactive(None)
    ctx_used: reactive[int | None] = reactive(None)
    n_ctx: reactive[int | None] = reactive(None)
    reasoning_tokens: reactive[int | None] = reactive(None)
    """Of the last reply's tokens, those spent thinking (None: it did not think)."""
    answer_tokens: reactive[int | None] = reactive(None)
    collapsed: reactive[bool] = reactive(False)
    overlay: reactive[bool] = reactive(False)
    """Below ``WIDE_FROM`` columns: the full panel laid over the chat (else one line)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: MonitorSnapshot | None = None
        self.elsewhere: ElsewhereSample | None = None
        self._asking_elsewhere = False
        self._timer: Timer | None = None

    @property
    def lmdesk(self) -> LmdeskApp:
        return cast("LmdeskApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(_("monitor"), classes="monitor-title")
        yield SteadyStatic(id="monitor-body")

    def on_mount(self) -> None:
        self._render_body()
        self._timer = self.set_interval(SAMPLE_S, self._tick)
        self.call_after_refresh(self._tick)

    def _watch_any(self) -> None:
        if self.is_mounted:
            self._render_body()

    watch_model_name = watch_load_state = watch_tokens_per_s = _watch_any
    watch_ttft_s = watch_ctx_used = watch_n_ctx = _watch_any
    watch_reasoning_tokens = watch_answer_tokens = _watch_any

    @property
    def narrow(self) -> bool:
        return self.app.size.width < WIDE_FROM

    @property
    def compact(self) -> bool:
        """Drawn as one status line (a narrow terminal, the overlay not shown)."""
        return self.narrow and not self.overlay

    def toggle(self) -> None:
        """f12: collapse or expand the column; in a narrow terminal, show or hide the full
        panel over the chat."""
        if self.narrow:
            self.overlay = not self.overlay
        else:
            self.collapsed = not self.collapsed

    def watch_overlay(self, overlay: bool) -> None:
        self.set_class(overlay, "-overlay")
        self._layout_changed()

    def on_resize(self) -> None:
        self._layout_changed()

    def _layout_changed(self) -> None:
        if not self.is_mounted:
            return
        if not self.narrow and self.overlay:
            self.overlay = False  # wide again: the column is back
        self.set_class(self.compact, "-compact")
        self._render_body()

    def watch_collapsed(self, collapsed: bool) -> None:
        self.set_class(collapsed, "-collapsed")
        self.styles.width = 5 if collapsed else None  # inline: wins over the app's #monitor
        self.query_one(".monitor-title", Static).update("mon" if collapsed else "monitor")
        if not collapsed and self.is_mounted:
            self._tick()

    # -- sampling ----------------------------------------------------------------------------

    def _tick(self) -> None:
        """Timer (UI thread): start a sample unless nobody can see it."""
        if self.collapsed or not self.display or not self.screen.is_active:
            return
        self._sample()  # the live rates are drawn with it, when it comes back: a frame a tick
        self._poll_elsewhere()

    def elsewhere_target(self) -> Target:
        """(RPC workers, endpoint URL, API key) of the current model; all empty when it runs
        here alone."""
        current = self.lmdesk.current
        params = current.model.params if current is not None else None
        rpc = tuple(params.rpc_servers) if params is not None else ()
        remote = self.lmdesk.remote
        return rpc, remote.base_url if remote else "", remote.api_key if remote else None

    def _poll_elsewhere(self) -> None:
        target = self.elsewhere_target()
        if not target[0] and not target[1]:
            if self.elsewhere is not None:
                self.elsewhere = None
                self._render_body()
            return
        if not self._asking_elsewhere:
            self._asking_elsewhere = True
            self._ask_elsewhere(target)

    @work(thread=True, group="monitor-elsewhere", exit_on_error=False)
    def _ask_elsewhere(self, target: Target) -> None:
        from tui.monitor.elsewhere import sample_elsewhere

        try:
            sample = sample_elsewhere(target[0], target[1] or None, target[2])
        except Exception:  # never a traceback from a poll: the last figures stay up
            sample = None
        if sample is None:
            self.app.call_from_thread(self._done_asking)
            return
        self.post_message(self.SampledElsewhere(target, sample))

    def _done_asking(self) -> None:
        self._asking_elsewhere = False

    def on_monitor_panel_sampled_elsewhere(self, event: MonitorPanel.SampledElsewhere) -> None:
        event.stop()
        self._asking_elsewhere = False
        if event.target != self.elsewhere_target():
            return  # asked for the model before this one
        self.elsewhere = event.sample
        self._render_body()

    @work(thread=True, exclusive=True, group="monitor", exit_on_error=False)
    def _sample(self) -> None:
        try:
            snapshot: MonitorSnapshot | None = self.lmdesk.ensure_sampler().sample()
        except Exception:  # a failed sample leaves the last figures up (the rates move on)
            snapshot = None
        self.post_message(self.Sampled(snapshot))

    def on_monitor_panel_sampled(self, event: MonitorPanel.Sampled) -> None:
        event.stop()
        if event.snapshot is not None:
            self.snapshot = event.snapshot
        self._render_body()

    # -- drawing -----------------------------------------------------------------------------

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows, as shown."""
        state = {"loading": "loading…", "ready": "", "failed": "failed"}.get(
            self.load_state, self.load_state
        )
        model = self.model_name or "--"
        remote = self.lmdesk.remote
        if remote is not None:  # the model runs on a remote endpoint, not here
            model = _("{model} (remote)", model=model)
        rows: list[tuple[str, str]] = [("model", model)]
        if remote is not None:
            rows.append(("", f"⇄ {remote.host}"))
        persona = self.lmdesk.active_persona()
        if persona:
            rows.append(("persona", _clip(persona, ROW_WIDTH - 7)))
        if state:
            rows.append(("status", state))
        snap = self.snapshot
        if snap is not None:
            rows.append(("RAM", f"{_gib(snap.ram_used)}/{_gib(snap.ram_total)} GiB"))
            rows.append(("", _("free {size}", size=size(snap.ram_available))))
            rows.append(("app", size(snap.app_rss)))
            for worker in snap.workers:
                value = size(worker.rss_bytes) if worker.alive else _("gone")
                room = ROW_WIDTH - 7 - len(value) - 1
                rows.append((" model", f"{value} {_clip(worker.label, room)}".rstrip()))
            if snap.gpus:
                for gpu in snap.gpus:
                    rows.append((f"VRAM{gpu.index}",
                                 f"{_gib(gpu.used_bytes)}/{_gib(gpu.total_bytes)} GiB"))
            else:
                rows.append(("VRAM", "-- (no GPU)"))
            rows.append(("CPU", f"{format_number(snap.cpu_percent, 0)}%"))
        if self.elsewhere is not None:
            rows.extend((label, _clip(value, ROW_WIDTH - 7))
                        for label, value in elsewhere_rows(self.elsewhere))
        rows.extend(self._rate_rows(self.lmdesk.rates.snapshot()))
        return rows

    def _rate_rows(self, rates: RateSnapshot) -> list[tuple[str, str]]:
        spark = sparkline(rates.history, 6)
        if rates.streaming:
            gen = f"{format_number(rates.live_tokens_per_s, 1)} tok/s"
            ttft_s = rates.ttft_s
            ctx_used, n_ctx = rates.context_tokens, rates.n_ctx or (self.n_ctx or 0)
        else:
            gen = ("--" if self.tokens_per_s is None
                   else f"{format_number(self.tokens_per_s, 1)} tok/s")
            ttft_s = self.ttft_s
            ctx_used, n_ctx = (self.ctx_used or 0), (self.n_ctx or 0)
        rows = [("gen", f"{gen} {spark}".rstrip())]
        rows.append(("ttft", "--" if ttft_s is None else f"{ttft_s:.2f} s"))
        if self.reasoning_tokens and not rates.streaming:
            rows.append(("think", _("{tokens} tok · answer {tokens2}",
                                    tokens=_tokens(self.reasoning_tokens),
                                    tokens2=_tokens(self.answer_tokens or 0))))
        if rates.prompt_tokens_per_s:
            rows.append(("prompt", f"{format_number(rates.prompt_tokens_per_s, 0)} tok/s"))
        if n_ctx:
            rows.append(("ctx", f"{_tokens(ctx_used)}/{_tokens(n_ctx)} {ctx_bar(ctx_used, n_ctx)}"))
        else:
            rows.append(("ctx", "--"))
        return rows

    def status_line(self) -> str:
        """The one line shown in a narrow terminal: model, RAM, tok/s, ctx."""
        rows = dict(self.lines())
        model = rows.get("model", "--")
        state = rows.get("status")
        parts = [f"{model} ({state})" if state else model]
        if "persona" in rows:
            parts[0] += f" as {rows['persona']}"
        if "RAM" in rows:
            parts.append(f"RAM {rows['RAM']}")
        gen = rows.get("gen", "--").split(" tok/s")[0]
        parts.append(f"{gen} tok/s" if gen != "--" else "-- tok/s")
        ctx = rows.get("ctx", "--")
        parts.append(f"ctx {ctx.split(' ')[0]}")
        return " · ".join(parts) + f"   {self.lmdesk.key_for('toggle_monitor')}: monitor"

    def _render_body(self) -> None:
        if self.compact:
            content = Content.styled(self.status_line(), "$text-muted")
        else:
            content = Content("\n").join(
                Content.assemble((_shown_label(label), "$text-muted"), value)
                for label, value in self.lines()
            )
        self.query_one("#monitor-body", SteadyStatic).show(content)
