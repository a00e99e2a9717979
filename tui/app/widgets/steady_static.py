"""A ``Static`` that asks for a layout only when its height changes.

``Static.update`` asks Textual for a layout of the whole screen at every call: every widget
moved and the terminal redrawn, a dozen milliseconds on a small machine. Lines updated while
a reply streams (the monitor each second, the status line) keep their height almost always;
``show`` repaints them alone then, and does nothing when the content is the same.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.app.widgets.markdown_lite import same_content


class SteadyStatic(Static):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._shown: Content | None = None
        self._shown_rows = -1

    def show(self, content: Content) -> None:
        """Draw ``content``: repainted alone when it takes as many rows as before."""
        if self._shown is not None and same_content(content, self._shown):
            return
        width = self.content_region.width
        rows = len(content.wrap(width)) if width else -1
        self.update(content, layout=rows < 0 or rows != self._shown_rows)
        self._shown, self._shown_rows = content, rows
