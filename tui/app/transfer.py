"""Export a conversation to a file (Markdown or JSON), import a JSON export.

Exports go to the user's documents folder, ``<Documents>/lmdesk`` (``LMDESK_EXPORT_DIR``
overrides it), not to wherever lmdesk was started; they are private (0600) like the store.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.display import count
from tui.i18n import _, format_datetime
from tui.store import ConversationMeta, Store, StoreError

if TYPE_CHECKING:
    from tui.app.app import LmdeskApp


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


def read_export(path: Path) -> dict[str, Any]:
    """The export in ``path``, checked; ``ValueError`` says in one line what is wrong."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(_("no such file: {path}", path=path)) from None
    except IsADirectoryError:
        raise ValueError(_("{path} is a folder: give the .json file in it", path=path)) from None
    except UnicodeDecodeError:
        raise ValueError(_("{path} is not a text file (not a JSON export)", path=path)) from None
    except OSError as exc:
        raise ValueError(_("cannot read {path}: {value}",
                           path=path, value=exc.strerror or exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(_("{name} is not JSON (line {lineno}: {msg})",
                           name=path.name, lineno=exc.lineno, msg=exc.msg)) from None
    if not isinstance(data, dict):
        raise ValueError(_("not a conversation export (expected a JSON object)"))
    from tui.store.exchange import parse_import

    try:
        parse_import(data)
    except StoreError as exc:
        raise ValueError(_("{name} is not an lmdesk export: {exc}",
                           name=path.name, exc=exc)) from None
    return data


def already_imported(store: Store, data: Mapping[str, Any]) -> ConversationMeta | None:
    """A conversation in the store that this export already made (the same title, start
    time and number of messages), or None."""
    conv = data.get("conversation")
    messages = data.get("messages")
    if not isinstance(conv, dict) or not isinstance(messages, list):
        return None
    created = conv.get("created")
    if not isinstance(created, int | float):
        return None
    for meta in store.list_conversations():
        if (meta.title == conv.get("title") and abs(meta.created - created) < 1e-3
                and meta.message_count == len(messages)):
            return meta
    return None


def import_conversation(store: Store, path: Path) -> ConversationMeta:
    """Add the conversation exported in ``path``. Raises OSError, ValueError or StoreError."""
    return store.import_json(read_export(path))


def ask_import(app: LmdeskApp, import_from: Callable[[Path], Awaitable[object]]) -> None:
    """The import dialog: a wrong path is said in the dialog, which stays open; a file
    imported before asks before making a second copy; then ``import_from(path)``."""
    from tui.app.screens.confirm import ConfirmScreen
    from tui.app.screens.text_input import TextInputScreen

    checked: dict[str, dict[str, Any]] = {}

    def check(value: str) -> str | None:
        try:
            checked[value] = read_export(Path(value))
        except ValueError as exc:
            return str(exc)
        return None

    async def chosen(value: str | None) -> None:
        if not value:
            return
        path = Path(value)
        twin = already_imported(app.store, checked[value]) if value in checked else None
        if twin is None:
            await import_from(path)
            return

        async def answer(yes: bool | None) -> None:
            if yes:
                await import_from(path)

        when = _day(twin.created)
        app.push_screen(ConfirmScreen(
            _("Imported before"), _("{name} was imported already: “{title}” ({count}, started "
                                 "{when}). Import a second copy?",
                                 name=path.name, title=twin.title,
                                 count=count(twin.message_count, 'message'), when=when),
            yes=_("Import again")), answer)

    app.push_screen(TextInputScreen(
        _("Import a conversation"), placeholder=_("path/to/export.json"),
        hint=_("A .json file written by Export.   Enter: import   esc: cancel"),
        check=check), chosen)


def _day(timestamp: float) -> str:
    from datetime import datetime

    return format_datetime(datetime.fromtimestamp(timestamp))
