"""The index's schema version and the ordered steps that upgrade old data folders.

``UPGRADES[i]`` upgrades a folder from version ``i`` to ``i + 1``; the current version is
``len(UPGRADES)``. A step receives the whole index (``{table: {doc_id: doc}}``) and the data
folder (for steps that must rewrite conversation files) and returns the new index. Steps run
in order, only by the instance holding the lock; the old index is kept as
``index.json.schema-v<N>`` first. Never edit a released step: append a new one.

Version 0 is the layout before versions were recorded: no ``meta`` table and conversation rows
that may lack fields.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.i18n import _

from .storage import AtomicJSONStorage

Index = dict[str, dict[str, Any]]
UpgradeStep = Callable[[Index, Path], Index]

META_TABLE = "meta"
META_DOC = "1"
TABLES_IN_FILES = 3
"""The first version whose named tables are files of their own (``tables``)."""


def _v0_to_v1(index: Index, data_dir: Path) -> Index:
    """Record the version and give every conversation row all of its fields."""
    now = time.time()
    for doc in index.get("conversations", {}).values():
        created = doc.get("created", now)
        doc.setdefault("title", "Untitled")
        doc.setdefault("created", created)
        doc.setdefault("updated", created)
        doc.setdefault("pinned", False)
        doc.setdefault("system_prompt", "")
        doc.setdefault("model", None)
        doc.setdefault("message_count", 0)
        doc.setdefault("extra", {})  # v2 turns it into "options"
        doc.setdefault("sig", None)
    index.setdefault("settings", {})
    return index


def _v1_to_v2(index: Index, data_dir: Path) -> Index:
    """The untyped ``extra`` bag of each conversation becomes typed ``options`` (see
    ``options.py``); keys it held that options do not know are kept under ``legacy_extra``."""
    from .options import options_from_legacy_extra

    for doc in index.get("conversations", {}).values():
        extra = doc.pop("extra", None)
        options, rest = options_from_legacy_extra(extra if isinstance(extra, dict) else {})
        model = options.get("model")
        if isinstance(model, dict) and not model.get("name"):
            model["name"] = doc.get("model") or ""
        doc["options"] = options
        if rest:
            doc["legacy_extra"] = rest
    return index


CORE_TABLES = (META_TABLE, "conversations")


def _v2_to_v3(index: Index, data_dir: Path) -> Index:
    """Nothing the user wrote depends on the index any more: each conversation's file gets
    its metadata (title, times, pin, system prompt, model, options) and every message its
    parent (a linear conversation becomes a chain), and each named table (settings, memory,
    templates, personas, profiles...) moves to a file of its own under ``tables/``. The index
    keeps only the schema and the list of conversations, which can be rebuilt from their files.

    Safe to run again after a crash part-way: the old index is still the source until the new
    one is written, and every file it writes is written whole from it."""
    from tui.config import ensure_private_dir

    from .conversation_file import META_DOC as CONV_META_DOC
    from .conversation_file import META_TABLE as CONV_META
    from .conversation_file import MSG_TABLE, ROW_FIELDS, index_row, record_parents
    from .storage import Damaged, parse
    from .tables import TABLES_DIR, file_name

    tables = ensure_private_dir(data_dir / TABLES_DIR)
    for name, table in index.items():
        if name not in CORE_TABLES:
            AtomicJSONStorage(tables / file_name(name)).write_raw({name: table})
    conv_dir = ensure_private_dir(data_dir / "conversations")
    for row in index.get("conversations", {}).values():
        cid = row.get("id")
        if not isinstance(cid, str):
            continue
        path = conv_dir / f"{cid}.json"
        try:
            data = parse(path.read_bytes())
        except FileNotFoundError:
            if path.with_name(path.name + ".bak").exists():
                continue  # restored from its backup when it is first read
            data = {}
        except (OSError, Damaged):
            continue  # told and mended from its backup when it is first read
        record_parents(data.setdefault(MSG_TABLE, {}))
        meta = {key: copy.deepcopy(row[key]) for key in ROW_FIELDS if key in row}
        old = data.get(CONV_META, {}).get(CONV_META_DOC)
        if isinstance(old, dict) and isinstance(old.get("shown"), str):
            meta["shown"] = old["shown"]
        data[CONV_META] = {CONV_META_DOC: {"id": cid, **meta}}
        storage = AtomicJSONStorage(path)
        storage.read()  # so the copy being replaced becomes the backup
        storage.write(data)
        row.update(index_row(cid, data, known=row))
        row["sig"] = list(storage.cached_signature) if storage.cached_signature else None
    return {name: table for name, table in index.items() if name in CORE_TABLES}


UPGRADES: list[UpgradeStep] = [_v0_to_v1, _v1_to_v2, _v2_to_v3]


def current_version() -> int:
    return len(UPGRADES)


def version_of(index: Index | None) -> int:
    if not index:
        return current_version()
    meta = index.get(META_TABLE, {}).get(META_DOC, {})
    version = meta.get("schema", 0)
    return version if isinstance(version, int) and version >= 0 else 0


def set_version(index: Index, version: int) -> None:
    meta = index.setdefault(META_TABLE, {}).setdefault(META_DOC, {})
    meta["schema"] = version


def prepare(storage: AtomicJSONStorage, data_dir: Path, notices: list[str]) -> str:
    """Create, check or upgrade the index at open. Returns why the store must be read-only
    (written by a newer lmdesk), else ""."""
    data = storage.read()
    version = version_of(data)
    current = current_version()
    if data is None:
        if not storage.read_only:
            fresh: Index = {}
            set_version(fresh, current)
            fresh[META_TABLE][META_DOC]["created"] = time.time()
            storage.write(fresh)
    elif version > current:
        return (
            _("{name} was written by a newer lmdesk (schema {version}; this one knows {current})",
              name=storage.path.name, version=version, current=current)
        )
    elif version < current:
        if storage.read_only:
            notices.append(
                _("{path} uses an older schema ({version}); it will be upgraded when lmdesk "
                  "opens it without another instance running.", path=storage.path, version=version)
            )
        else:
            keep = storage.path.with_name(f"{storage.path.name}.schema-v{version}")
            AtomicJSONStorage(keep).write_raw(copy.deepcopy(data))
            storage.write(upgrade(data, data_dir))
    return ""


def upgrade(index: Index, data_dir: Path) -> Index:
    """Run every step from the index's version to the current one."""
    version = version_of(index)
    while version < current_version():
        index = UPGRADES[version](index, data_dir)
        version += 1
        set_version(index, version)
    return index
