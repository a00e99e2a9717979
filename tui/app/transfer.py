"""Export a conversation to a file (Markdown or JSON), import a JSON export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tui.store import ConversationMeta, Store


def slug(title: str) -> str:
    """A file-name-safe form of a title."""
    text = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return text[:40] or "conversation"


def export_conversation(store: Store, cid: str, path: Path) -> Path:
    """Write ``cid`` to ``path`` (relative: to the current folder); ``.json`` writes JSON, any
    other suffix Markdown. Returns the absolute path. Raises OSError or StoreError."""
    path = path.expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.suffix.lower() == ".json":
        data = json.dumps(store.export_json(cid), indent=2, ensure_ascii=False)
    else:
        data = store.export_markdown(cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data, encoding="utf-8")
    return path


def import_conversation(store: Store, path: Path) -> ConversationMeta:
    """Add the conversation exported in ``path``. Raises OSError, ValueError or StoreError."""
    data = json.loads(path.expanduser().read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a conversation export (expected a JSON object)")
    return store.import_json(data)
