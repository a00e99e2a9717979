"""SVG snapshot of the conversation list with a long title: it wraps inside the list, under
itself, instead of its second line starting at the screen's left edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app_fixtures import export_data, make_app, make_paths
from tests.test_snapshots import settle
from tui.store import Store

LONG = "Planning the family trip to the mountains next summer, with the grandparents"


def test_long_title_wraps_inside_the_list(snap_compare: Any, tmp_path: Path) -> None:
    store = Store.open(make_paths(tmp_path).data_dir)
    store.import_json(export_data("Tax letter", 1, pinned=True, updated=1_700_000_001.0))
    store.import_json(export_data(LONG, 1, updated=1_700_000_002.0))
    store.import_json(export_data("Story ideas", 1, updated=1_700_000_000.0))
    app = make_app(tmp_path, store=store, model_name="smollm2-135m")
    assert snap_compare(app, terminal_size=(100, 30), run_before=settle)


def test_long_title_prompt_keeps_its_text() -> None:
    from tui.app.widgets.sidebar import PIN, conversation_prompt
    from tui.store import ConversationMeta

    meta = ConversationMeta(id="x", title=LONG, created=0.0, updated=0.0, pinned=True)
    assert str(conversation_prompt(meta)) == PIN + LONG
