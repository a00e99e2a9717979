"""Export a conversation to a file (Markdown or JSON), import a JSON export.

Exports go to the user's documents folder, ``<Documents>/lmdesk`` (``LMDESK_EXPORT_DIR``
overrides it), not to wherever lmdesk was started; they are private (0600) like the store.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from tui.store import ConversationMeta, Store


def slug(title: str) -> str:
    """A file-name-safe form of a title."""
    text = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return text[:40] or "conversation"


ENV_EXPORT_DIR = "LMDESK_EXPORT_DIR"


def export_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where exports go by default: ``LMDESK_EXPORT_DIR``, else ``<Documents>/lmdesk``."""
    chosen = (os.environ if env is None else env).get(ENV_EXPORT_DIR)
    if chosen:
        return Path(chosen).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_documents_dir()) / "lmdesk"


def export_conversation(store: Store, cid: str, path: Path, base: Path | None = None) -> Path:
    """Write ``cid`` to ``path`` (relative: to ``base``, by default ``export_dir()``);
    ``.json`` writes JSON, any other suffix Markdown. The file is private (0600). Returns
    the absolute path. Raises OSError or StoreError."""
    path = path.expanduser()
    if not path.is_absolute():
        path = (base if base is not None else export_dir()) / path
    if path.suffix.lower() == ".json":
        data = json.dumps(store.export_json(cid), indent=2, ensure_ascii=False)
    else:
        data = store.export_markdown(cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
        f.write(data)
    return path


def import_conversation(store: Store, path: Path) -> ConversationMeta:
    """Add the conversation exported in ``path``. Raises OSError, ValueError or StoreError."""
    data = json.loads(path.expanduser().read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a conversation export (expected a JSON object)")
    return store.import_json(data)
