"""``lmdesk templates ...`` and ``lmdesk memory ...``, through their parsers and functions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.prompting.cli import (
    add_memory_parser,
    add_templates_parser,
    cmd_memory,
    cmd_templates,
    render_for_ask,
)
from tui.prompting.templates import TemplateError, TemplateLibrary, TemplateNotFound
from tui.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as s:
        yield s


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lmdesk")
    sub = parser.add_subparsers(dest="command")
    add_templates_parser(sub)
    add_memory_parser(sub)
    return parser.parse_args(argv)


def run(store: Store, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = parse(*argv)
    fn = cmd_templates if args.command == "templates" else cmd_memory
    code = fn(args, store)
    out, err = capsys.readouterr()
    return code, out, err


def test_templates_list_and_show(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(store, capsys, "templates", "list")
    assert code == 0 and "email-reply " in out and "email-reply-es" in out
    code, out, _ = run(store, capsys, "templates", "list", "--lang", "es", "--json")
    rows = json.loads(out)
    assert code == 0 and rows and all(r["lang"] == "es" for r in rows)
    code, out, _ = run(store, capsys, "templates", "list", "--search", "unit tests", "--json")
    assert json.loads(out)[0]["name"] == "code-unit-tests"
    code, out, _ = run(store, capsys, "templates", "show", "translate")
    assert code == 0 and "target" in out and "required" in out and "{{ text }}" in out
    code, out, _ = run(store, capsys, "templates", "show", "translate", "--json")
    assert json.loads(out)["builtin"] is True
    code, _, err = run(store, capsys, "templates", "show", "nope")
    assert code == 1 and "no template named 'nope'" in err


def test_templates_import_export_render(store: Store, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mine.json"
    src.write_text(json.dumps({"templates": [
        {"name": "greet", "body": "Hello {{ who }}!", "tags": ["fun"]}]}))
    code, out, _ = run(store, capsys, "templates", "import", str(src))
    assert code == 0 and "imported greet" in out
    code, out, err = run(store, capsys, "templates", "import", str(src))
    assert code == 1 and "already exists" in err
    code, out, _ = run(store, capsys, "templates", "import", str(src), "--replace", "--json")
    assert json.loads(out) == {"result": "imported", "names": ["greet"]}
    code, out, _ = run(store, capsys, "templates", "render", "greet", "--var", "who=a=b")
    assert code == 0 and out == "Hello a=b!\n"
    code, out, _ = run(store, capsys, "templates", "export", "greet")
    assert json.loads(out)["templates"][0]["name"] == "greet"
    dest = tmp_path / "out.json"
    code, out, _ = run(store, capsys, "templates", "export", "greet,summary", str(dest))
    assert code == 0 and [t["name"] for t in json.loads(dest.read_text())["templates"]] == [
        "greet", "summary"]
    code, out, _ = run(store, capsys, "templates", "copy", "summary", "my-summary")
    assert code == 0 and TemplateLibrary(store).exists("my-summary")
    code, out, _ = run(store, capsys, "templates", "rm", "greet")
    assert code == 0 and not TemplateLibrary(store).exists("greet")
    code, _, err = run(store, capsys, "templates", "rm", "summary")
    assert code == 1 and "built in" in err


def test_bad_import_file_is_reported(store: Store, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"templates": [\n  {"name": "x",\n   "body": "oops" "more"}]}')
    code, _, err = run(store, capsys, "templates", "import", str(bad))
    assert code == 1 and f"{bad}, line 3" in err
    code, _, err = run(store, capsys, "templates", "import", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read" in err


def test_render_for_ask(store: Store) -> None:
    text = render_for_ask(store, "translate", ["text=Hola", "target=English"])
    assert "Hola" in text and "into English" in text
    with pytest.raises(TemplateError, match="missing required variable 'target'"):
        render_for_ask(store, "translate", ["text=Hola"])
    with pytest.raises(TemplateError, match="key=value"):
        render_for_ask(store, "translate", ["text"])
    with pytest.raises(TemplateError, match="given twice"):
        render_for_ask(store, "translate", ["text=a", "text=b"])
    with pytest.raises(TemplateError, match="unknown variable 'lang'"):
        render_for_ask(store, "translate", ["text=a", "target=b", "lang=c"])
    with pytest.raises(TemplateNotFound):
        render_for_ask(store, "no-such", [])


def test_memory_commands(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(store, capsys, "memory", "list")
    assert code == 0 and "nothing remembered" in out
    code, out, _ = run(store, capsys, "memory", "add", "I", "prefer", "metric", "--json")
    added = json.loads(out)
    assert code == 0 and added["text"] == "I prefer metric" and added["enabled"]
    code, out, _ = run(store, capsys, "memory", "add", "My name is Ana", "--important")
    assert code == 0 and out.startswith("remembered m")
    code, out, _ = run(store, capsys, "memory", "disable", added["id"])
    assert code == 0 and "disabled" in out
    code, out, _ = run(store, capsys, "memory", "list", "--json")
    rows = json.loads(out)
    assert [r["text"] for r in rows] == ["I prefer metric", "My name is Ana"]
    assert [r["enabled"] for r in rows] == [False, True] and rows[1]["important"]
    code, out, _ = run(store, capsys, "memory", "list")
    assert f"{added['id']}  off" in out
    code, out, _ = run(store, capsys, "memory", "rm", added["id"], "--json")
    assert code == 0 and json.loads(out)["result"] == "rm"
    code, _, err = run(store, capsys, "memory", "rm", added["id"])
    assert code == 1 and "no memory" in err


def test_read_only_store_refuses_writes(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path / "ro").close()
    with Store.open(tmp_path / "ro", read_only=True) as ro:
        code, _, err = run(ro, capsys, "memory", "add", "x")
        assert code == 1 and "read-only" in err
        code, out, _ = run(ro, capsys, "templates", "list")
        assert code == 0 and "summary" in out
