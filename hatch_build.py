"""Hatchling build hook: compile the ``.po`` catalogs under tui/locale into ``.mo`` files
inside the wheel, so an installed lmdesk loads them without Babel's parser. The repository
keeps only the ``.po`` sources (a checkout compiles them in memory, see tui/i18n.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CatalogBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "lmdesk-catalogs"
    _out_dir: Path | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        out_dir = self._out_dir = Path(tempfile.mkdtemp(prefix="lmdesk-mo-"))
        for po in sorted(Path(self.root, "tui", "locale").glob("*/LC_MESSAGES/*.po")):
            with po.open("rb") as handle:
                parsed = read_po(handle)
            relative = po.relative_to(self.root).with_suffix(".mo")
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                write_mo(handle, parsed, use_fuzzy=False)
            build_data["force_include"][str(target)] = str(relative)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        # the .mo files are in the wheel now: their folder would be left in /tmp per build
        if self._out_dir is not None:
            shutil.rmtree(self._out_dir, ignore_errors=True)
            self._out_dir = None
