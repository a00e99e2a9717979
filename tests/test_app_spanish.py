"""The app in Spanish: SVG snapshots at 80x24 (main screen, model switcher) and a Pilot walk
through every screen that finds no English text from the catalog left untranslated."""

from __future__ import annotations

import dataclasses
import html
import re
import string
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from textual.pilot import Pilot

from tests.app_fixtures import export_data, make_app, make_paths, pilot_test, wait_for
from tests.test_snapshots import settle, snapshot_app, steady_cursors
from tui import i18n
from tui.app.app import LmdeskApp
from tui.app.screens.models import ModelsScreen
from tui.models.fit import Resources
from tui.models.listing import list_models
from tui.models.speed import MachineSpeed, SpeedModel
from tui.store import Store

GiB = 1024**3
MACHINE = Resources(ram_available=12 * GiB, ram_total=16 * GiB)
TWO_CORES = SpeedModel(MachineSpeed(bandwidth_gb_s=31.0, gflops=70.0, threads=2))


def spanish_snapshot_app(tmp_path: Path) -> LmdeskApp:
    i18n.set_language(i18n.Language("es", "es_AR"))
    return snapshot_app(tmp_path)


def test_main_screen_80x24_in_spanish(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(spanish_snapshot_app(tmp_path), terminal_size=(80, 24),
                        run_before=settle)


def test_model_switcher_80x24_in_spanish(snap_compare: Any, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The switcher with this machine's packaged models, sized for a fixed machine; their
    paths (where the virtual environment is) shown as one fixed folder."""
    from tui.app.screens import models

    def listed(*args: Any, **kwargs: Any) -> list[Any]:
        return [dataclasses.replace(m, path=f"/models/{Path(m.path).name}")
                for m in list_models(*args, **kwargs) if m.source == "packaged"]

    monkeypatch.setattr(models, "list_models", listed)

    async def open_switcher(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, LmdeskApp)
        await wait_for(pilot, lambda: app.model_state == "ready")
        screen = ModelsScreen(resources=lambda: MACHINE, speed=lambda: TWO_CORES)
        app.push_screen(screen)
        await wait_for(pilot, lambda: screen.listed, timeout=30)
        steady_cursors(app)
        await pilot.pause(0.2)

    assert snap_compare(spanish_snapshot_app(tmp_path), terminal_size=(80, 24),
                        run_before=open_switcher)


# -- every screen --------------------------------------------------------------------------------


def english_phrases() -> dict[str, str]:
    """Catalog English a Spanish screen must not show: the longest literal run of each
    translated text (between its placeholders) that has three words or more."""
    with i18n.po_path("es").open("rb") as handle:
        catalog = read_po(handle)
    phrases: dict[str, str] = {}
    for entry in catalog:
        if not entry.id:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        for msgid in ids:
            try:
                runs = [lit for lit, *_rest in string.Formatter().parse(msgid)]
            except ValueError:
                runs = [msgid]
            for run in runs:
                for line in run.split("\n"):
                    words = re.findall(r"[A-Za-z']+", line)
                    if len(words) >= 3 and not any(line.strip() in s for s in strings):
                        phrases[line.strip()] = msgid
    return phrases


def screen_text(app: LmdeskApp) -> str:
    """What the terminal shows, one row a line, from the screenshot Textual exports."""
    svg = app.export_screenshot()
    rows: dict[str, list[str]] = {}
    for y, text in re.findall(r'<text[^>]*\by="([\d.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(y, []).append(html.unescape(text).replace("\xa0", " "))
    return "\n".join("".join(parts) for _y, parts in
                     sorted(rows.items(), key=lambda item: float(item[0])))


SCREENS = [
    ("main", []), ("help", ["f1"]), ("models", ["ctrl+o"]), ("catalogue", ["ctrl+o", "d"]),
    ("endpoints", ["ctrl+o", "e"]), ("profiles", ["ctrl+o", "p"]),
    ("templates", ["alt+t"]), ("personas", ["alt+p"]), ("memory", ["alt+m"]),
    ("knowledge", ["alt+k"]), ("tools", ["alt+x"]), ("doctor", ["f10"]),
    ("welcome", ["alt+w"]), ("compare", ["alt+c"]), ("tune", ["alt+u"]),
    ("search", ["ctrl+f"]), ("system prompt", ["ctrl+s"]), ("rename", ["f2"]),
    ("delete", ["f8"]), ("export", ["f6"]), ("palette", ["ctrl+p"]),
]


async def steady_text(pilot: Pilot[Any], app: LmdeskApp) -> str:
    """The screen once two looks 0.3 s apart agree (a footer being recomposed after a
    binding change has no keys for a moment; a loaded machine makes that moment longer)."""
    before = ""
    for _attempt in range(20):
        await pilot.pause(0.3)
        now = screen_text(app)
        if now == before and "^p" in now:
            break
        before = now
    return before


async def walk(tmp_path: Path, screens: list[tuple[str, list[str]]]) -> dict[str, str]:
    """Open each screen from the chat with its keys; what each shows, by name."""
    store = Store.open(make_paths(tmp_path).data_dir)
    store.import_json(export_data("Ideas", 1))
    app = make_app(tmp_path, store=store, model_name="smollm2-135m")
    seen: dict[str, str] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_state == "ready")
        base = len(app.screen_stack)
        for name, keys in screens:
            for key in keys:
                await pilot.press(key)
                await pilot.pause(0.3)
            if name in ("doctor", "welcome"):
                await wait_for(pilot, lambda: "Checking this machine" not in screen_text(app)
                               and "Comprobando esta máquina" not in screen_text(app),
                               timeout=60)
            seen[name] = await steady_text(pilot, app)
            while len(app.screen_stack) > base:
                app.pop_screen()
                await pilot.pause(0.1)
    return seen


@pilot_test
async def test_every_screen_in_spanish_shows_no_catalog_english(tmp_path: Path) -> None:
    phrases = english_phrases()
    assert len(phrases) > 500
    i18n.set_language(i18n.Language("es", "es_AR"))
    seen = await walk(tmp_path, SCREENS)
    assert "Nueva" in seen["main"] and "Buscar" in seen["main"]  # the footer, in Spanish
    assert "Teclas" in seen["help"] and "Modelos locales" in seen["models"]
    left = {name: sorted({p for p in phrases if p in text}) for name, text in seen.items()}
    assert {name: found for name, found in left.items() if found} == {}


@pilot_test
async def test_the_walk_sees_catalog_english_in_an_english_app(tmp_path: Path) -> None:
    phrases = english_phrases()
    seen = await walk(tmp_path, [("help", ["f1"]), ("tools", ["alt+x"])])
    assert {p for p in phrases if p in seen["help"]} >= {"Start a new conversation"}
    assert any(p in seen["tools"] for p in phrases)
