"""Templates: safe rendering, clear errors, the built-in set, the library, files to share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.prompting.builtin_templates import (
    builtin_templates,
    dumps_templates,
    loads_templates,
    read_template_file,
)
from tui.prompting.templates import (
    ReadOnlyTemplate,
    Template,
    TemplateError,
    TemplateFileError,
    TemplateLibrary,
    TemplateNotFound,
    Variable,
    parse,
)
from tui.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as s:
        yield s


def tpl(body: str, *variables: Variable, name: str = "t") -> Template:
    return Template(name=name, body=body, variables=variables)


# --- rendering -------------------------------------------------------------------------------


def test_variables_defaults_and_whitespace() -> None:
    t = tpl("Dear {{name}},\n{{ body }}\n-- {{ sender }}",
            Variable("name"), Variable("body"), Variable("sender", default="Ana"))
    assert t.render({"name": "Bo", "body": "hi"}) == "Dear Bo,\nhi\n-- Ana"
    assert t.render({"name": "Bo", "body": "hi", "sender": ""}) == "Dear Bo,\nhi\n-- "


def test_values_are_inserted_verbatim_never_parsed() -> None:
    t = tpl("say: {{ x }}", Variable("x"))
    assert t.render({"x": "{{ x.__class__ }} {% import os %}"}) == (
        "say: {{ x.__class__ }} {% import os %}")


def test_escaped_braces_are_literal() -> None:
    assert tpl(r"code \{{ x }} and {{ x }}", Variable("x")).render({"x": "1"}) == (
        "code {{ x }} and 1")


def test_missing_required_variable_names_it_and_its_position() -> None:
    t = tpl("Reply to:\n  {{ email }} about {{ topic }}",
            Variable("email", "the email you received"), Variable("topic"))
    with pytest.raises(TemplateError) as err:
        t.render({})
    e = err.value
    assert (e.variable, e.line, e.column) == ("email", 2, 3)
    assert "'email'" in str(e) and "'topic'" in str(e) and "line 2, column 3" in str(e)
    assert "the email you received" in str(e)


def test_unknown_variable_in_values_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"unknown variable 'nmae'.*takes name"):
        tpl("{{ name }}", Variable("name")).render({"nmae": "x"})


def test_undeclared_variable_in_body_has_a_position() -> None:
    with pytest.raises(TemplateError) as err:
        tpl("ok\nab {{ who }}").validate()
    assert (err.value.variable, err.value.line, err.value.column) == ("who", 2, 4)


@pytest.mark.parametrize("body", [
    "{{ x.__class__ }}", "{{ ''.join }}", "{{ x() }}", "{{ x|upper }}", "{{ x + 1 }}",
    "{{ __import__('os').system('echo hi') }}", "{{ x['a'] }}",
])
def test_expressions_are_refused_not_run(body: str) -> None:
    with pytest.raises(TemplateError, match=r"not a variable name.*nothing was run") as err:
        parse("line one\n  " + body)
    assert (err.value.line, err.value.column) == (2, 3)


def test_tags_are_refused() -> None:
    with pytest.raises(TemplateError, match=r"'\{% import os %\}'.*not supported") as err:
        parse("x {% import os %} y")
    assert (err.value.line, err.value.column) == (1, 3)


def test_unclosed_braces_give_line_and_column() -> None:
    with pytest.raises(TemplateError, match="not closed") as err:
        tpl("first\nsecond {{ name\n}}", Variable("name")).render({"name": "x"})
    assert (err.value.line, err.value.column) == (2, 8)
    assert "line 2, column 8" in str(err.value)


def test_empty_slot_is_an_error() -> None:
    with pytest.raises(TemplateError, match="empty"):
        parse("{{ }}")


def test_declared_but_unused_and_duplicate_variables() -> None:
    with pytest.raises(TemplateError, match="never used"):
        tpl("hi", Variable("x")).validate()
    with pytest.raises(TemplateError, match="twice"):
        tpl("{{ x }}", Variable("x"), Variable("x")).validate()


# --- built-ins -------------------------------------------------------------------------------

JOBS = [
    "email-reply", "email-reply-es", "report", "summary", "meeting-notes",
    "product-description", "marketing-campaign", "email-sequence", "headlines", "social-posts",
    "legal-plain-language", "lesson-plan", "explain-for-students", "research-summary",
    "comparison-table", "code-explain", "code-unit-tests", "code-translate", "code-find-bugs",
    "code-names", "plot-ideas", "character", "dialogue", "rewrite-style", "grammar-fix",
    "translate",
]


def test_builtins_cover_the_everyday_jobs_and_all_render() -> None:
    by_name = {t.name: t for t in builtin_templates()}
    assert set(JOBS) <= set(by_name)
    assert {t.lang for t in by_name.values()} == {"en", "es"}
    for t in by_name.values():
        assert t.builtin and t.title and t.description and t.tags and t.category
        assert all(v.description for v in t.variables), t.name
        values = {v.name: f"<{v.name}>" for v in t.variables if v.required}
        text = t.render(values)
        assert "{{" not in text and all(v in text for v in values.values())
    assert by_name["legal-plain-language"].render({"clause": "c"}).count("inconsistenc") == 1


def test_spanish_versions_pair_with_english_ones() -> None:
    names = {t.name for t in builtin_templates()}
    for name in names:
        if name.endswith("-es"):
            assert name[:-3] in names


# --- library ---------------------------------------------------------------------------------


def test_crud_tags_and_search(store: Store) -> None:
    lib = TemplateLibrary(store)
    t = lib.create("standup", "Yesterday: {{ done }}\nToday: {{ plan }}", title="Stand-up",
                   tags=["Work", "daily ", "work"])
    assert t.tags == ("work", "daily") and [v.name for v in t.variables] == ["done", "plan"]
    assert lib.get("standup").body == t.body
    with pytest.raises(TemplateError, match="already exists"):
        lib.create("standup", "x")
    lib.update("standup", title="Daily stand-up", description="for the team")
    assert lib.get("standup").title == "Daily stand-up"
    lib.add_tags("standup", "team")
    lib.remove_tags("standup", "daily")
    assert lib.get("standup").tags == ("work", "team")
    assert "team" in lib.tags()
    assert [x.name for x in lib.list_templates(tag="team")] == ["standup"]
    assert lib.search("stand-up")[0].name == "standup"
    assert lib.search("daily team")[0].name == "standup"  # all words, in different fields
    assert lib.search("meeting minutes")[0].name.startswith("meeting-notes")
    assert lib.search("qwertyuiop") == []
    renamed = lib.update("standup", name="daily-standup")
    assert renamed.name == "daily-standup" and not lib.exists("standup")
    assert lib.render("daily-standup", {"done": "a", "plan": "b"}) == "Yesterday: a\nToday: b"
    lib.delete("daily-standup")
    with pytest.raises(TemplateNotFound):
        lib.get("daily-standup")


def test_builtins_are_read_only_but_can_be_duplicated(store: Store) -> None:
    lib = TemplateLibrary(store)
    with pytest.raises(ReadOnlyTemplate, match="duplicate"):
        lib.update("email-reply", title="mine")
    with pytest.raises(ReadOnlyTemplate):
        lib.delete("email-reply")
    with pytest.raises(ReadOnlyTemplate):
        lib.create("email-reply", "x")
    copy = lib.duplicate("email-reply")
    assert copy.name == "email-reply-copy" and not copy.builtin
    assert lib.duplicate("email-reply").name == "email-reply-copy-2"
    lib.update("email-reply-copy", body=copy.body + "\nP.S. {{ ps }}",
               variables=[*copy.variables, Variable("ps", default="thanks")])
    assert lib.render("email-reply-copy", {"email": "e"}).endswith("P.S. thanks")
    assert lib.get("email-reply").builtin
    assert len(lib.list_templates(builtin=False)) == 2


def test_invalid_edits_are_refused_and_nothing_changes(store: Store) -> None:
    lib = TemplateLibrary(store)
    lib.create("mine", "{{ a }}")
    with pytest.raises(TemplateError, match="unknown variable 'b'"):
        lib.update("mine", body="{{ a }} {{ b }}")
    with pytest.raises(TemplateError, match="bad template name"):
        lib.create("Bad Name", "x")
    assert lib.get("mine").body == "{{ a }}"


def test_user_templates_persist(tmp_path: Path) -> None:
    with Store.open(tmp_path / "d") as s:
        TemplateLibrary(s).create("keep", "{{ x }}", tags=["a"])
    with Store.open(tmp_path / "d") as s:
        assert TemplateLibrary(s).get("keep").tags == ("a",)


# --- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_export_import_round_trip(store: Store, tmp_path: Path, suffix: str) -> None:
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    lib = TemplateLibrary(store)
    lib.create("multi", "Line one {{ a }}\n  indented: {{ b }}\n\"quotes\" ñ ü",
               variables=[Variable("a", "first", None, True), Variable("b", "second", "dflt")],
               tags=["x", "y"], lang="es", category="work", title="Multi")
    path = tmp_path / f"shared{suffix}"
    lib.export_file(["multi", "summary"], path)
    with Store.open(tmp_path / "other") as other:
        lib2 = TemplateLibrary(other)
        with pytest.raises(ReadOnlyTemplate, match="built-in"):
            lib2.import_file(path)  # "summary" clashes with the built-in
        assert not lib2.exists("multi")  # all or nothing
        only = tmp_path / f"only{suffix}"
        lib.export_file(["multi"], only)
        [imported] = lib2.import_file(only)
        original = lib.get("multi")
        for field in ("name", "body", "title", "variables", "tags", "lang", "category"):
            assert getattr(imported, field) == getattr(original, field)
        with pytest.raises(TemplateError, match="already exists"):
            lib2.import_file(only)
        assert lib2.import_file(only, replace_existing=True)[0].name == "multi"


def test_builtins_export_and_reload_identically() -> None:
    text = dumps_templates(builtin_templates())
    again = loads_templates(text, builtin=True)
    assert tuple(again) == builtin_templates()


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"templates": [\n  {"name": "a", "body": "x"}\n  {"name": "b"}\n]}\n')
    with pytest.raises(TemplateFileError) as err:
        read_template_file(path)
    assert err.value.line == 3 and str(path) in str(err.value)
    assert "line 3" in str(err.value) and "not valid JSON" in str(err.value)


def test_bad_template_in_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    doc = {"templates": [{"name": "ok", "body": "{{ a }}"},
                         {"name": "bad", "body": "hi {{ a.__class__ }}"}]}
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(TemplateFileError) as err:
        read_template_file(path)
    starts = [i + 1 for i, text in enumerate(path.read_text().splitlines()) if text == "    {"]
    assert err.value.line == starts[1]
    assert "'bad'" in str(err.value) and "not a variable name" in str(err.value)
    assert "body line 1, column 4" in str(err.value)


def test_missing_body_and_duplicates_in_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('[{"name": "a"}]')
    with pytest.raises(TemplateFileError, match=r"t\.json, line 1: template 'a': .*'body'"):
        read_template_file(path)
    path.write_text('[{"name": "a", "body": "x"},\n {"name": "a", "body": "y"}]')
    with pytest.raises(TemplateFileError, match="line 2: template 'a' appears twice"):
        read_template_file(path)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("templates:\n  - name: a\n    body: [unclosed\n  - name: b\n")
    with pytest.raises(TemplateFileError) as err:
        read_template_file(path)
    assert err.value.line is not None and str(path) in str(err.value)
    path.write_text("templates:\n  - name: a\n    body: hi\n  - name: b\n    body: '{{ x'\n")
    with pytest.raises(TemplateFileError) as err:
        read_template_file(path)
    assert err.value.line == 4 and "not closed" in str(err.value)


def test_hand_written_file_without_variables(tmp_path: Path) -> None:
    path = tmp_path / "simple.json"
    path.write_text(json.dumps({"name": "simple", "body": ["Hello {{ who }}", "bye"]}))
    [t] = read_template_file(path)
    assert t.body == "Hello {{ who }}\nbye" and t.variables == (Variable("who"),)
