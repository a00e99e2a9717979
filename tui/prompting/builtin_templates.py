"""Template files: the format used to share templates, and the built-in set shipped in it.

A file is JSON (always) or YAML (when PyYAML is installed)::

    {"kind": "lmdesk-templates", "version": 1, "templates": [{"name": ..., "body": ...}]}

A bare list of templates, or one template object, is read too. Errors name the file and the
line: of the syntax error, or of the template that is wrong.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from tui.i18n import N_, _
from tui.prompting.templates import (
    PromptingError,
    Template,
    TemplateError,
    TemplateFileError,
    position,
)

BUILTIN_FILE = "data/templates.json"


@functools.cache
def builtin_templates() -> tuple[Template, ...]:
    """The templates shipped with lmdesk (read-only in the library)."""
    text = resources.files("tui.prompting").joinpath(BUILTIN_FILE).read_text(encoding="utf-8")
    return tuple(loads_templates(text, source=f"tui/prompting/{BUILTIN_FILE}", builtin=True))


FILE_KIND = "lmdesk-templates"


def _yaml() -> Any:
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return yaml


def dumps_templates(templates: Sequence[Template], fmt: str = "json") -> str:
    """The text of a template file: ``{"kind": ..., "version": 1, "templates": [...]}``."""
    doc = {"kind": FILE_KIND, "version": 1, "templates": [t.to_dict() for t in templates]}
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    yaml = _yaml()
    if fmt != "yaml" or yaml is None:
        raise PromptingError(
            _("cannot write {fmt!r} files: use json (YAML needs PyYAML installed)", fmt=fmt)
            if fmt == "yaml" else _("cannot write {fmt!r} files: use json", fmt=fmt))

    class Dumper(yaml.SafeDumper):  # type: ignore[misc,name-defined]
        pass

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return str(yaml.dump(doc, Dumper=Dumper, allow_unicode=True, sort_keys=False, width=100))


MAX_FILE_BYTES = 4 * 2**20
"""A template file larger than this is refused before it is read."""
NESTED_TOO_DEEP = N_("nested too deeply to be a template file")


def file_format(path: Path) -> str:
    return "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"


def loads_templates(text: str, *, source: str = "<text>", fmt: str = "json",
                    builtin: bool = False) -> list[Template]:
    """Parse a template file's text; any problem is a ``TemplateFileError`` naming ``source``
    and the line (of the syntax error, or of the template that is wrong)."""
    if fmt == "yaml":
        yaml = _yaml()
        if yaml is None:
            raise TemplateFileError(source, _("reading YAML needs PyYAML (pip install pyyaml); "
                                              "or export the templates as JSON"))
        try:
            data = yaml.safe_load(text)
        except RecursionError:
            raise TemplateFileError(source, _(NESTED_TOO_DEEP)) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            column = mark.column + 1 if mark is not None else None
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise TemplateFileError(source, _("not valid YAML: {reason}", reason=reason),
                                    line=line, column=column) from None
    else:
        try:
            data = json.loads(text)
        except RecursionError:
            raise TemplateFileError(source, _(NESTED_TOO_DEEP)) from None
        except json.JSONDecodeError as exc:
            raise TemplateFileError(source, _("not valid JSON: {msg}", msg=exc.msg),
                                    line=exc.lineno, column=exc.colno) from None
    if isinstance(data, dict) and "templates" in data:
        items = data["templates"]
    elif isinstance(data, dict):
        items = [data]
    else:
        items = data
    if not isinstance(items, list):
        raise TemplateFileError(source, _('expected a list of templates (or {"templates": [...]})'))
    lines = _item_lines(text, fmt, len(items))
    out: list[Template] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        line = lines[index] if index < len(lines) else None
        try:
            template = Template.from_dict(item, builtin=builtin)
        except TemplateError as exc:
            which = (_("template {name!r}", name=exc.template) if exc.template
                     else _("template #{number}", number=index + 1))
            inner = (_(" (body line {line}, column {column})", line=exc.line, column=exc.column)
                     if exc.line else "")
            raise TemplateFileError(source, f"{which}: {exc.reason}{inner}", line=line) from None
        if template.name in seen:
            raise TemplateFileError(source, _("template {name!r} appears twice",
                                              name=template.name),
                                    line=line)
        seen.add(template.name)
        out.append(template)
    return out


def _item_lines(text: str, fmt: str, count: int) -> list[int | None]:
    """The line each template starts on, best effort (the text is known to parse)."""
    try:
        return _yaml_item_lines(text) if fmt == "yaml" else _json_item_lines(text)
    except Exception:  # positions are a courtesy: never let them hide the real error
        return [None] * count


def _json_item_lines(text: str) -> list[int | None]:
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\r\n]*")

    def skip(i: int) -> int:
        return ws.match(text, i).end()  # type: ignore[union-attr]

    def array_items(i: int) -> list[int | None]:
        found: list[int | None] = []
        i = skip(i + 1)
        while text[i] != "]":
            found.append(position(text, i)[0])
            _value, i = decoder.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
        return found

    start = skip(0)
    if text[start] == "[":
        return array_items(start)
    i = skip(start + 1)
    while text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # past ':'
        if key == "templates" and text[i] == "[":
            return array_items(i)
        _value, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    return [position(text, start)[0]]


def _yaml_item_lines(text: str) -> list[int | None]:
    yaml = _yaml()
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "templates" and isinstance(value, yaml.SequenceNode):
                node = value
                break
        else:
            return [node.start_mark.line + 1]
    return [item.start_mark.line + 1 for item in node.value]


def read_template_file(path: Path | str, *, builtin: bool = False) -> list[Template]:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TemplateFileError(str(path), _("{value:.1f} MiB is too large for a template "
                                                 "file (up to {value2} MiB)",
                                                 value=size / 2**20,
                                                 value2=MAX_FILE_BYTES // 2**20))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateFileError(str(path), _("cannot read it ({exc})", exc=exc)) from None
    return loads_templates(text, source=str(path), fmt=file_format(path), builtin=builtin)


def write_template_file(templates: Sequence[Template], path: Path | str) -> None:
    path = Path(path)
    path.write_text(dumps_templates(templates, file_format(path)), encoding="utf-8")
