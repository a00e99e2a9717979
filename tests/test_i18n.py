"""The Spanish catalog and the translation helper: every text in the code has a translation with
the same placeholders, no user-facing string is left unwrapped, the language is chosen as the
README says, and the CLI speaks Spanish when asked."""

from __future__ import annotations

import ast
import os
import re
import string
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tui import i18n
from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {"_": None, "n_": (1, 2), "N_": None}

# -- the catalog --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    msgid: str | tuple[str, str]
    where: str


def extracted_messages(root: Path = ROOT / "tui") -> list[Extracted]:
    """Every _(), n_() and N_() text of the code, as Babel (scripts/catalog) extracts them."""
    found = []
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(root), method_map=[("**.py", "python")], keywords=KEYWORDS,
            comment_tags=(), strip_comment_tags=True):
        msgid = message if isinstance(message, str) else (message[0], message[1])
        found.append(Extracted(msgid, f"{filename}:{lineno}"))
    return found


def _fields(text: str) -> set[str]:
    """The placeholders of a text: ``{name}`` fields (str.format) and ``%(name)s`` / ``%s``
    (argparse's own messages)."""
    names = {f"%({m})" for m in re.findall(r"%\((\w+)\)", text)}
    names |= {f"%{m}" for m in re.findall(r"%[sdr]", text)}
    try:
        names |= {f"{{{name}}}" for _lit, name, _spec, _conv in string.Formatter().parse(text)
                  if name is not None}
    except ValueError:
        names.add("<unbalanced braces>")
    return names


def catalog_problems(messages: Iterable[Extracted], catalog: Catalog) -> list[str]:
    """One line for each text with no usable translation, or whose placeholders differ."""
    problems = []
    for m in messages:
        key = m.msgid if isinstance(m.msgid, str) else m.msgid[0]
        entry = catalog.get(key)
        if entry is None:
            problems.append(f"{m.where}: no entry for {key!r}")
            continue
        if entry.fuzzy:
            problems.append(f"{m.where}: {key!r} is marked fuzzy")
        sources = [m.msgid] if isinstance(m.msgid, str) else list(m.msgid)
        translations = ([entry.string] if isinstance(entry.string, str)
                        else list(entry.string))
        if isinstance(m.msgid, tuple) != isinstance(entry.id, tuple):
            should = "should" if isinstance(m.msgid, tuple) else "should not"
            problems.append(f"{m.where}: {key!r} {should} have plural forms")
            continue
        if not all(translations):
            problems.append(f"{m.where}: {key!r} is not translated")
            continue
        want = set().union(*(_fields(s) for s in sources))
        for text in translations:
            if _fields(text) != want:
                problems.append(f"{m.where}: {key!r} has placeholders {sorted(want)}, its "
                                f"translation {text!r} has {sorted(_fields(text))}")
    return problems


def spanish_catalog() -> Catalog:
    with i18n.po_path("es").open("rb") as handle:
        return read_po(handle)


def test_every_text_has_a_spanish_translation_with_the_same_placeholders() -> None:
    messages = extracted_messages()
    assert len(messages) > 1000  # the extraction found the code's texts
    assert catalog_problems(messages, spanish_catalog()) == []


def test_the_catalog_has_no_entry_the_code_lost() -> None:
    """scripts/catalog drops them; a stale entry means the catalog was edited by hand."""
    keys = {m.msgid if isinstance(m.msgid, str) else m.msgid[0] for m in extracted_messages()}
    stale = [entry.id for entry in spanish_catalog() if entry.id and
             (entry.id if isinstance(entry.id, str) else entry.id[0]) not in keys]
    assert stale == []


def test_the_catalog_check_fails_on_a_missing_or_mismatched_entry() -> None:
    catalog = Catalog(locale="es")
    catalog.add("Loaded {name}.", "Cargado {nombre}.")
    catalog.add("Deleted.", "")
    catalog.add(("{count} file", "{count} files"), ("{count} archivo", "archivos"))
    messages = [Extracted("Loaded {name}.", "a.py:1"), Extracted("Deleted.", "a.py:2"),
                Extracted(("{count} file", "{count} files"), "a.py:3"),
                Extracted("Not in the catalog", "a.py:4")]
    problems = catalog_problems(messages, catalog)
    assert len(problems) == 4
    assert "placeholders" in problems[0] and "not translated" in problems[1]
    assert "archivos" in problems[2] and "no entry" in problems[3]


# -- user-facing strings the code shows without translating them ------------------------------

PENDING = (
    # the benchmarks' figures (developer output, `lmdesk bench`)
    "tui/app/bench_app.py", "tui/app/bench_ui.py", "tui/models/bench.py",
    "tui/store/bench.py", "tui/kb/bench.py", "tui/tune/bench.py", "tui/serve/bench.py",
    "tui/serve/bench_against.py", "tui/session/bench_tools.py",
)
"""Modules whose strings are not all wrapped yet, by name, so what is left is plain to see."""

NOT_FOR_PEOPLE = (
    # the RPC server subprocess talks a line protocol ("ready", "error: ...") to its parent
    "tui/rpc/server.py",
    # a reply's failure text: serve answers context_length_exceeded when it says
    # "context window" (the worker speaks the caller's language otherwise)
    "tui/engine/generation.py",
    # the benchmarks' output (developer figures, `lmdesk bench`)
    "tui/engine/bench.py", "tui/engine/bench_grammar.py", "tui/engine/bench_kv.py",
    "tui/engine/bench_lookup.py", "tui/rpc/bench.py",
    # the draft proposer's check of its own arguments (a programming error, never a user's)
    "tui/engine/lookup.py",
)

SINK_CALLS = {"notify", "Label", "Static", "Button", "Checkbox", "Switch", "RadioButton",
              "print", "write", "update", "ConfirmScreen", "TextInputScreen", "TabPane",
              "CliError", "guard", "_try", "add_column", "add_columns"}
SINK_KEYWORDS = {"help", "description", "title", "placeholder", "sub_title", "label",
                 "tooltip", "epilog", "border_title", "prompt"}
SINK_ATTRIBUTES = {"title", "sub_title", "border_title", "border_subtitle", "tooltip"}
NOT_WORDS = {"tok", "GiB", "MiB", "KiB", "GB", "ms", "pid", "id", "ttft", "ctx", "json", "md",
             "jsonl", "gguf", "yaml", "lmdesk", "http", "https", "www", "v1", "gpu", "temp",
             "LoRA"}


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _prose(node: ast.expr) -> bool:
    """Text a person reads: a word of two letters or more that is not a unit, a file type or
    an all-capitals table heading."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
    else:
        return False
    if not any(ch.isspace() for part in parts for ch in part) and \
            any(ch in part for part in parts for ch in "./"):
        return False  # a file name or a path
    words = [w for part in parts for w in re.findall(r"[A-Za-z][A-Za-z']+", part)]
    return any(w not in NOT_WORDS and not w.isupper() for w in words)


def _shown(tree: ast.AST) -> Iterator[ast.expr]:
    """String literals handed straight to something that shows them."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _callee(node)
            if name == "Binding":
                yield from node.args[2:3]
            elif name in ("_builtin", "_spanish"):
                continue  # the shipped personas: data, written out in each language
            elif name == "bad":
                yield from node.args[:1]  # serve's 400: the message (then a field, a code)
            elif name in SINK_CALLS or name.endswith("Error"):
                yield from node.args
            yield from (k.value for k in node.keywords if k.arg in SINK_KEYWORDS)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr in SINK_ATTRIBUTES for t in node.targets):
            yield node.value


def unwrapped_strings(paths: Iterable[Path]) -> list[str]:
    found = []
    for path in paths:
        for node in _shown(ast.parse(path.read_text(encoding="utf-8"))):
            if _prose(node):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def covered_modules() -> list[Path]:
    return [p for p in sorted((ROOT / "tui").rglob("*.py"))
            if not str(p.relative_to(ROOT)).startswith(PENDING + NOT_FOR_PEOPLE)]


def test_no_user_facing_string_is_left_unwrapped() -> None:
    assert len(covered_modules()) > 100
    assert unwrapped_strings(covered_modules()) == []


def test_the_unwrapped_string_scan_finds_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from tui.i18n import _\n"
        "def f(app, name, parser):\n"
        "    app.notify(f'Loaded {name}.')\n"          # found
        "    app.notify(_('Loaded {name}.', name=name))\n"
        "    parser.add_argument('--x', help='the x')\n"  # found
        "    print(f'{name:28} {3:>6} MODEL')\n"       # a table heading: not prose
        "    raise ValueError('bad value')\n"         # found
        "    raise bad(f'{name} must be a number', name, 'invalid_value')\n"  # found (once)
        "    raise bad(_('{name} must be a number', name=name), name, 'invalid_value')\n",
        encoding="utf-8")
    found = unwrapped_strings([sample])
    assert [line.split(":")[1] for line in found] == ["3", "5", "7", "8"]


def test_pending_modules_exist() -> None:
    """The list of what is left names real modules (so it shrinks as they are done)."""
    for entry in PENDING + NOT_FOR_PEOPLE:
        assert (ROOT / entry).exists(), entry


# -- the language --------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "setting", "environ", "code", "locale"), [
    (None, None, {}, "en", "en"),
    (None, None, {"LANG": "es_AR.UTF-8"}, "es", "es_AR"),
    (None, None, {"LANG": "es_MX.UTF-8", "LC_ALL": "en_US.UTF-8"}, "en", "en"),
    (None, None, {"LANG": "en_GB.UTF-8", "LC_MESSAGES": "es_ES.UTF-8"}, "es", "es_ES"),
    (None, None, {"LC_ALL": "es"}, "es", "es"),
    (None, "es", {"LANG": "en_US.UTF-8"}, "es", "es"),
    ("en", "es", {"LANG": "es_AR.UTF-8"}, "en", "en"),
    ("es", None, {}, "es", "es"),
    (None, None, {"LANG": "C.UTF-8"}, "en", "en"),
])
def test_the_language_comes_from_the_flag_then_the_setting_then_the_locale(
        flag: str | None, setting: str | None, environ: dict[str, str], code: str,
        locale: str) -> None:
    assert i18n.choose_language(flag, setting, environ) == i18n.Language(code, locale)


def test_english_is_the_default_and_the_fallback() -> None:
    assert i18n.current_language().code == "en"
    assert i18n._("Search") == "Search"
    i18n.set_language("es")
    assert i18n._("Search") == "Buscar"
    assert i18n._("a text no catalog has") == "a text no catalog has"
    i18n.set_language("fr")
    assert i18n._("Search") == "Search"


def test_plurals_and_named_placeholders_in_spanish() -> None:
    i18n.set_language("es")
    assert i18n.n_("{count} message", "{count} messages", 1) == "1 mensaje"
    assert i18n.n_("{count} message", "{count} messages", 3) == "3 mensajes"
    assert i18n.n_("{count} message", "{count} messages", 0) == "0 mensajes"
    assert i18n._("Loading {name} for this conversation…", name="gemma") == \
        "Cargando gemma para esta conversación…"


def test_numbers_follow_the_locale() -> None:
    assert i18n.format_number(3.14159, 1) == "3.1"  # English keeps Python's format
    i18n.set_language(i18n.Language("es", "es_AR"))
    assert i18n.format_number(3.14159, 1) == "3,1"
    assert i18n._("quedan {value:.0f} min", value=4.6) == "quedan 5 min"
    text = i18n._("the body is {count:,} characters: a template may have up to "
                  "{MAX_BODY_CHARS:,}", count=12345, MAX_BODY_CHARS=100000)
    assert "12.345" in text and "100.000" in text
    i18n.set_language(i18n.Language("es", "es_MX"))  # Mexico writes a decimal point
    assert i18n.format_number(3.14159, 1) == "3.1"


def test_a_checkout_compiles_the_po_when_the_mo_is_missing_or_stale(tmp_path: Path) -> None:
    po = i18n.po_path("es")
    mo = po.with_suffix(".mo")
    assert not mo.exists(), "no compiled catalog is kept in the repository"
    fresh = i18n.catalog("es")
    assert fresh.gettext("Search") == "Buscar"
    # a stale .mo (older than its .po) is not trusted
    from babel.messages.mofile import write_mo

    stale = Catalog(locale="es")
    stale.add("Search", "VIEJO")
    try:
        with mo.open("wb") as handle:
            write_mo(handle, stale)
        old = po.stat().st_mtime - 60
        os.utime(mo, (old, old))
        assert i18n.catalog("es").gettext("Search") == "Buscar"
        os.utime(mo, None)  # newer than the .po: the compiled one is used (as in a wheel)
        assert i18n.catalog("es").gettext("Search") == "VIEJO"
    finally:
        mo.unlink()


def test_the_wheel_build_hook_compiles_every_catalog(tmp_path: Path) -> None:
    """hatch_build.py writes a .mo for each .po into the wheel's force-include map."""
    import gettext

    sys.path.insert(0, str(ROOT))
    try:
        from hatch_build import CatalogBuildHook
    finally:
        sys.path.remove(str(ROOT))
    hook = CatalogBuildHook(str(ROOT), {}, None, None, str(tmp_path), "wheel")
    build_data: dict[str, dict[str, str]] = {"force_include": {}}
    hook.initialize("standard", build_data)
    ((source, target),) = build_data["force_include"].items()
    assert target == "tui/locale/es/LC_MESSAGES/lmdesk.mo"
    with open(source, "rb") as handle:
        assert gettext.GNUTranslations(handle).gettext("Search") == "Buscar"
    hook.finalize("standard", build_data, str(tmp_path / "lmdesk.whl"))
    assert not Path(source).exists()  # the compiled catalogs' temporary folder is not left behind
    assert not Path(source).parents[4].exists()
    editable: dict[str, dict[str, str]] = {"force_include": {}}
    hook.initialize("editable", editable)  # an editable install compiles at run time instead
    assert editable["force_include"] == {}


# -- the CLI in Spanish --------------------------------------------------------------------------


def test_help_in_spanish(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--lang", "es", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("uso: lmdesk")
    assert "opciones:" in out and "argumentos posicionales:" in out
    assert "mostrar este mensaje de ayuda y salir" in out
    assert "listar, describir, descargar y borrar modelos" in out
    assert "show this help" not in out and "options:" not in out


def test_a_subcommands_help_follows_the_locale() -> None:
    env = dict(os.environ, LANG="es_AR.UTF-8", LC_ALL="", LC_MESSAGES="")
    done = subprocess.run([sys.executable, "-m", "tui.cli", "models", "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uso: lmdesk models")
    assert "modelos locales y cómo encajan en esta máquina" in done.stdout


def test_three_error_lines_in_spanish(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lang", "es", "chats", "show", "zzzz"]) == 1
    err = capsys.readouterr().err
    assert err == "lmdesk: error: no hay ninguna conversación 'zzzz' (ver `lmdesk chats list`)\n"

    assert main(["--lang", "es", "models", "info", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmdesk: error: models info: ningún modelo se llama 'no-such-model'")

    with pytest.raises(SystemExit) as done:
        main(["--lang", "es", "bench", "nada"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "lmdesk bench: error: argumento what: opción no válida: 'nada' (elige entre" in err


def test_a_spanish_setting_switches_the_cli(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text('language = "es"\nbogus = 1\n', encoding="utf-8")
    assert main(["--config-dir", str(config), "--data-dir", str(tmp_path / "data"),
                 "chats", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("todavía no hay conversaciones")


def test_a_bad_language_setting_is_one_line(tmp_path: Path) -> None:
    from tui.config import Paths, load_settings

    paths = Paths(tmp_path, tmp_path, tmp_path)
    (tmp_path / "config.toml").write_text('language = "fr"\n', encoding="utf-8")
    settings, problems = load_settings(paths)
    assert settings.language is None
    assert len(problems) == 1 and 'should be "en" or "es"' in problems[0]


# -- templates and personas in Spanish -----------------------------------------------------------


def test_every_builtin_template_has_a_spanish_twin_with_the_same_slots() -> None:
    from tui.prompting.builtin_templates import builtin_templates
    from tui.prompting.template_syntax import slots

    templates = {t.name: t for t in builtin_templates()}
    english = [t for t in templates.values() if t.lang == "en"]
    spanish = [t for t in templates.values() if t.lang == "es"]
    assert len(english) == len(spanish) == 33
    for t in english:
        twin = templates[f"{t.name}-es"]
        assert twin.lang == "es" and twin.category == t.category and "es" in twin.tags
        if t.name != "grammar-fix":  # the Spanish one asks for the variety of Spanish instead
            assert [v.name for v in twin.variables] == [v.name for v in t.variables], t.name
        assert {s.name for s in slots(twin.body)} == {v.name for v in twin.variables}
        assert twin.title != t.title and twin.body != t.body


def test_templates_list_in_spanish_shows_the_spanish_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data-dir", str(tmp_path), "templates", "list"]
    assert main(["--lang", "es", *args]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 33 and all(" es " in row for row in rows)
    assert main(["--lang", "es", *args, "--lang", "all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 66
    assert main(args) == 0  # English lists every language, as before
    assert len(capsys.readouterr().out.splitlines()) == 66


def test_the_shipped_personas_follow_the_language(tmp_path: Path) -> None:
    from tui.prompting.personas import BUILTIN_PERSONAS, PersonaLibrary
    from tui.store import Store

    store = Store.open(tmp_path)
    english = {p.id: p for p in PersonaLibrary(store).list_personas()}
    i18n.set_language("es")
    spanish = {p.id: p for p in PersonaLibrary(store).list_personas()}
    assert list(spanish) == list(english) == [p.id for p in BUILTIN_PERSONAS]
    assert spanish["teacher"].name == "Docente" and english["teacher"].name == "Teacher"
    assert spanish["technical"].sampling == english["technical"].sampling
    assert spanish["technical"].examples[0].instruction.startswith("¿Qué significa")
    assert "técnico" in spanish["technical"].system_block()
    store.close()


def _rebinds_underscore(function: ast.AST) -> bool:
    """``_`` assigned in the function's own scope (not a comprehension's)."""
    pending = list(ast.iter_child_nodes(function))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp |
                      ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store):
            return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def test_no_function_hides_the_translation_helper_behind_a_throwaway_underscore() -> None:
    """``for name, _ in ...`` in a module that imports ``_`` makes every ``_()`` of that
    function call the throwaway value instead (an UnboundLocalError or a crash)."""
    found = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(isinstance(n, ast.ImportFrom) and n.module == "tui.i18n" and
                   any(a.name == "_" for a in n.names) for n in tree.body):
            continue
        found += [f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}" for fn in ast.walk(tree)
                  if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                  and _rebinds_underscore(fn)]
    assert found == []


def test_no_translated_text_hides_inside_an_f_string() -> None:
    """Babel cannot see a _() written inside an f-string's braces (Python 3.11 reads the
    f-string as one token): such a text would never reach the catalog."""
    found = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                found += [f"{path.relative_to(ROOT)}:{node.lineno}" for call in ast.walk(node)
                          if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                          and call.func.id in KEYWORDS]
    assert found == []


# -- a language per request (for serve's Accept-Language) ----------------------------------------


@pytest.mark.parametrize(("header", "code", "locale"), [
    ("es", "es", "es"), ("es-AR,es;q=0.9,en;q=0.8", "es", "es_AR"),
    ("en-US,en;q=0.9,es;q=0.8", "en", "en"), ("fr-FR,es;q=0.5", "es", "es"),
    ("fr, de", "en", "en"), (None, "en", "en"), ("es;q=0, en", "en", "en"),
    ("en;q=0.4, es-MX;q=0.7", "es", "es_MX"), ("*", "en", "en"),
])
def test_accept_language_picks_a_language_lmdesk_speaks(
        header: str | None, code: str, locale: str) -> None:
    assert i18n.language_from_accept(header) == i18n.Language(code, locale)


def test_speaking_holds_for_this_thread_only() -> None:
    import threading

    seen: dict[str, str] = {}
    ready = threading.Barrier(2)

    def answer(name: str, language: str) -> None:
        with i18n.speaking(language):
            ready.wait(timeout=10)
            seen[name] = i18n._("Search") + " " + i18n.format_number(2.5, 1)

    threads = [threading.Thread(target=answer, args=("es", "es")),
               threading.Thread(target=answer, args=("en", "en"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen == {"es": "Buscar 2,5", "en": "Search 2.5"}
    assert i18n._("Search") == "Search"  # the process's language was never changed
