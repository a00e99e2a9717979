"""The right-hand panel: the model, its load state, the last reply's speed, the context used.

A placeholder for the fuller monitor (RAM, CPU, VRAM, sparklines) that comes later.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static


def _tokens(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def ctx_bar(used: int, total: int, width: int = 8) -> str:
    if total <= 0:
        return ""
    filled = min(width, round(width * used / total))
    return "█" * filled + "░" * (width - filled)


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
    }
    """

    model_name: reactive[str] = reactive("")
    load_state: reactive[str] = reactive("loading")
    """"loading", "ready" or "failed"."""
    tokens_per_s: reactive[float | None] = reactive(None)
    ttft_s: reactive[float | None] = reactive(None)
    ctx_used: reactive[int | None] = reactive(None)
    n_ctx: reactive[int | None] = reactive(None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def compose(self) -> ComposeResult:
        yield Static("monitor", classes="monitor-title")
        yield Static(id="monitor-body")

    def on_mount(self) -> None:
        self._render_body()

    def _watch_any(self) -> None:
        if self.is_mounted:
            self._render_body()

    watch_model_name = watch_load_state = watch_tokens_per_s = _watch_any
    watch_ttft_s = watch_ctx_used = watch_n_ctx = _watch_any

    def _render_body(self) -> None:
        state = {"loading": "loading…", "ready": "ready", "failed": "failed"}.get(
            self.load_state, self.load_state
        )
        rate = "--" if self.tokens_per_s is None else f"{self.tokens_per_s:.1f} tok/s"
        ttft = "--" if self.ttft_s is None else f"{self.ttft_s:.2f} s"
        if self.n_ctx:
            used = self.ctx_used or 0
            ctx = f"{_tokens(used)}/{_tokens(self.n_ctx)} {ctx_bar(used, self.n_ctx)}"
        else:
            ctx = "--"
        lines = [
            ("model", self.model_name or "--"),
            ("status", state),
            ("gen", rate),
            ("ttft", ttft),
            ("ctx", ctx),
        ]
        content = Content("\n").join(
            Content.assemble((f"{label:<7}", "$text-muted"), value) for label, value in lines
        )
        self.query_one("#monitor-body", Static).update(content)
