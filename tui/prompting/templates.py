"""Prompt templates: named variables, safe rendering, a store-backed library, shareable files.

A template body is plain text with ``{{ variable }}`` slots. The parser here knows nothing
else: no attributes, calls, filters or tags, and values are inserted verbatim (never parsed
again), so rendering cannot run code. ``\\{{`` writes a literal ``{{``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.i18n import _, n_
from tui.prompting.errors import (
    PromptingError,
    ReadOnlyTemplate,
    TemplateError,
    TemplateFileError,
    TemplateNotFound,
)
from tui.prompting.template_syntax import _NAME, _SLUG, Slot, parse, position, slots

__all__ = [
    "PromptingError",
    "ReadOnlyTemplate",
    "Slot",
    "Template",
    "TemplateError",
    "TemplateFileError",
    "TemplateLibrary",
    "TemplateNotFound",
    "Variable",
    "parse",
    "position",
    "slots",
]

if TYPE_CHECKING:
    from tinydb.table import Table

    from tui.store import Store


MAX_BODY_CHARS = 100_000
"""The longest template body (a prompt: a few times the largest context window there is)."""


@dataclass(frozen=True)
class Variable:
    name: str
    description: str = ""
    default: str | None = None
    """``None``: the variable is required."""
    multiline: bool = False
    """A hint for forms: a long text (an email, some code) rather than a word or two."""

    @property
    def required(self) -> bool:
        return self.default is None


def variables_from_body(body: str) -> tuple[Variable, ...]:
    """A required variable for each distinct slot, in order of first use."""
    seen: dict[str, None] = {}
    for slot in slots(body):
        seen.setdefault(slot.name)
    return tuple(Variable(name) for name in seen)


@dataclass(frozen=True)
class Template:
    name: str
    """A slug, unique in the library: ``email-reply``, ``email-reply-es``."""
    body: str
    title: str = ""
    description: str = ""
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ()
    lang: str = "en"
    category: str = ""
    builtin: bool = False
    created: float = 0.0
    updated: float = 0.0

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)

    def validate(self) -> None:
        """A ``TemplateError`` for a bad name, body, or variables that don't match the body."""
        if not isinstance(self.name, str) or not _SLUG.match(self.name):
            raise TemplateError(
                _("bad template name {name!r}: use lowercase letters, digits and '-' (up to "
                  "64), like 'email-reply'", name=self.name))
        if len(self.body) > MAX_BODY_CHARS:
            raise TemplateError(_("the body is {count:,} characters: a template may have up to "
                                  "{MAX_BODY_CHARS:,}",
                                  count=len(self.body),
                                  MAX_BODY_CHARS=MAX_BODY_CHARS), template=self.name)
        try:
            used = slots(self.body)
        except TemplateError as exc:
            raise TemplateError(exc.reason, line=exc.line, column=exc.column,
                                template=self.name) from None
        declared: set[str] = set()
        for var in self.variables:
            if not _NAME.match(var.name):
                raise TemplateError(_("bad variable name {name!r}: use letters, digits and '_'",
                                      name=var.name), variable=var.name, template=self.name)
            if var.name in declared:
                raise TemplateError(_("variable {name!r} is declared twice", name=var.name),
                                    variable=var.name, template=self.name)
            declared.add(var.name)
        for slot in used:
            if slot.name not in declared:
                raise TemplateError(
                    _("unknown variable {name!r}: declare it in the template's variables",
                      name=slot.name),
                    line=slot.line, column=slot.column, variable=slot.name, template=self.name)
        unused = declared - {s.name for s in used}
        if unused:
            name = sorted(unused)[0]
            raise TemplateError(_("variable {name!r} is declared but never used in the body",
                                  name=name),
                                variable=name, template=self.name)

    def render(self, values: Mapping[str, str] | None = None) -> str:
        """The body with every slot filled from ``values`` or the variable's default."""
        values = dict(values or {})
        declared = {v.name: v for v in self.variables}
        for key, value in values.items():
            if key not in declared:
                names = ", ".join(declared) or _("no variables")
                raise TemplateError(_("unknown variable {key!r}: this template takes {names}",
                                      key=key, names=names),
                                    variable=key, template=self.name)
            if not isinstance(value, str):
                raise TemplateError(_("the value of {key!r} must be text, got {value!r}",
                                      key=key, value=value),
                                    variable=key, template=self.name)
        self.validate()
        out: list[str] = []
        missing: list[Slot] = []
        for part in parse(self.body):
            if isinstance(part, str):
                out.append(part)
                continue
            filled = values.get(part.name, declared[part.name].default)
            if filled is None:
                if all(m.name != part.name for m in missing):
                    missing.append(part)
                continue
            out.append(filled)
        if missing:
            first = missing[0]
            what = declared[first.name].description
            names = ", ".join(repr(m.name) for m in missing)
            message = n_("missing required variable {names}", "missing required variables {names}",
                         len(missing), names=names)
            raise TemplateError(
                _("{message} ({name}: {what})", message=message, name=first.name, what=what)
                if what else message,
                line=first.line, column=first.column, variable=first.name, template=self.name)
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """The shareable form (what export writes): no ``builtin`` flag or timestamps."""
        variables: list[dict[str, Any]] = []
        for v in self.variables:
            doc: dict[str, Any] = {"name": v.name, "description": v.description}
            if v.default is not None:
                doc["default"] = v.default
            if v.multiline:
                doc["multiline"] = True
            variables.append(doc)
        return {"name": self.name, "title": self.title, "description": self.description,
                "lang": self.lang, "category": self.category, "tags": list(self.tags),
                "variables": variables, "body": self.body}

    @classmethod
    def from_dict(cls, data: Any, *, builtin: bool = False) -> Template:
        """Parse and validate; ``body`` may be a string or a list of lines, and ``variables``
        may be left out (each slot then becomes a required variable)."""
        if not isinstance(data, dict):
            raise TemplateError(_("a template must be an object, got {name}",
                                  name=type(data).__name__))
        label = data.get("name") if isinstance(data.get("name"), str) else None
        body = data.get("body")
        if isinstance(body, list) and all(isinstance(x, str) for x in body):
            body = "\n".join(body)
        if not isinstance(body, str):
            raise TemplateError(_("field 'body' is missing or not text"), template=label)
        for key in ("name", "title", "description", "lang", "category"):
            if key in data and not isinstance(data[key], str):
                raise TemplateError(_("field {key!r} must be text", key=key), template=label)
        if "name" not in data:
            raise TemplateError(_("field 'name' is missing"))
        tags = data.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise TemplateError(_("field 'tags' must be a list of text"), template=label)
        raw_vars = data.get("variables")
        if raw_vars is None:
            try:
                variables = variables_from_body(body)
            except TemplateError as exc:
                raise TemplateError(exc.reason, line=exc.line, column=exc.column,
                                    template=label) from None
        elif not isinstance(raw_vars, list):
            raise TemplateError(_("field 'variables' must be a list"), template=label)
        else:
            variables = tuple(_variable_from(v, label) for v in raw_vars)
        template = cls(
            name=data["name"], body=body, title=data.get("title", ""),
            description=data.get("description", ""), variables=variables,
            tags=normalize_tags(tags), lang=data.get("lang", "en") or "en",
            category=data.get("category", ""), builtin=builtin,
            created=_number(data.get("created")), updated=_number(data.get("updated")),
        )
        template.validate()
        return template


def _variable_from(doc: Any, label: str | None) -> Variable:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise TemplateError(_("each variable needs a 'name', got {doc!r}", doc=doc), template=label)
    default = doc.get("default")
    if default is not None and not isinstance(default, str | int | float):
        raise TemplateError(_("the default of {name!r} must be text", name=doc['name']),
                            variable=doc["name"], template=label)
    desc = doc.get("description", "")
    return Variable(name=doc["name"], description=desc if isinstance(desc, str) else str(desc),
                    default=None if default is None else str(default),
                    multiline=bool(doc.get("multiline", False)))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Lowercase, trimmed, without duplicates, in first-seen order."""
    out: dict[str, None] = {}
    for tag in tags:
        clean = " ".join(tag.strip().lower().split())
        if clean:
            out.setdefault(clean)
    return tuple(out)


# --- the library ---------------------------------------------------------------------------

TABLE = "templates"


class TemplateLibrary:
    """Built-in templates (read-only) and the user's own, kept in the store's "templates"
    table. Names are unique across both."""

    def __init__(self, store: Store, builtins: Sequence[Template] | None = None) -> None:
        if builtins is None:
            from tui.prompting.builtin_templates import builtin_templates

            builtins = builtin_templates()
        self._store = store
        self._builtins = {t.name: t for t in builtins}
        self.notices: list[str] = []
        """Stored templates that could not be read (skipped, left in the table)."""

    def _table(self) -> Table:
        return self._store.table(TABLE)

    def _user(self) -> dict[str, Template]:
        out: dict[str, Template] = {}
        for doc in self._table().all():
            try:
                template = Template.from_dict(dict(doc))
            except TemplateError as exc:
                note = _("a stored template was skipped: {exc}", exc=exc)
                if note not in self.notices:
                    self.notices.append(note)
                continue
            out[template.name] = template
        return out

    def list_templates(self, *, tag: str | None = None, lang: str | None = None,
                       category: str | None = None, query: str | None = None,
                       builtin: bool | None = None) -> list[Template]:
        """All templates (sorted by name, or by relevance when ``query`` is given), filtered."""
        pool = list({**self._builtins, **self._user()}.values())
        if tag is not None:
            wanted = normalize_tags([tag])
            pool = [t for t in pool if set(wanted) <= set(t.tags)]
        if lang is not None:
            pool = [t for t in pool if t.lang == lang]
        if category is not None:
            pool = [t for t in pool if t.category == category]
        if builtin is not None:
            pool = [t for t in pool if t.builtin == builtin]
        if query is None or not query.strip():
            return sorted(pool, key=lambda t: t.name)
        scored = [(s, t) for t in pool if (s := _score(t, query)) > 0]
        return [t for _, t in sorted(scored, key=lambda st: (-st[0], st[1].name))]

    def search(self, query: str) -> list[Template]:
        """Every word of ``query`` in the name, title, description, tags or body; best first."""
        return self.list_templates(query=query)

    def tags(self) -> dict[str, int]:
        """Each tag in use and how many templates carry it."""
        counts: dict[str, int] = {}
        for t in self.list_templates():
            for tag in t.tags:
                counts[tag] = counts.get(tag, 0) + 1
        return dict(sorted(counts.items()))

    def get(self, name: str) -> Template:
        found = self._user().get(name) or self._builtins.get(name)
        if found is None:
            near = [t.name for t in self.list_templates(query=name)][:3]
            hint = _(" (did you mean {join}?)", join=', '.join(near)) if near else ""
            raise TemplateNotFound(_("no template named {name!r}{hint}", name=name, hint=hint))
        return found

    def exists(self, name: str) -> bool:
        return name in self._builtins or name in self._user()

    def render(self, name: str, values: Mapping[str, str] | None = None) -> str:
        return self.get(name).render(values)

    def create(self, name: str, body: str, *, title: str = "", description: str = "",
               variables: Sequence[Variable] | None = None, tags: Iterable[str] = (),
               lang: str = "en", category: str = "") -> Template:
        """A new user template; without ``variables`` each slot becomes a required one."""
        now = time.time()
        template = Template(
            name=name, body=body, title=title, description=description,
            variables=tuple(variables) if variables is not None else variables_from_body(body),
            tags=normalize_tags(tags), lang=lang, category=category, created=now, updated=now)
        return self.add(template)

    def add(self, template: Template, *, replace_existing: bool = False) -> Template:
        """Store ``template`` as a user template (imports use this)."""
        template = replace(template, builtin=False, tags=normalize_tags(template.tags),
                           created=template.created or time.time(),
                           updated=template.updated or time.time())
        template.validate()
        if template.name in self._builtins:
            raise ReadOnlyTemplate(_("{name!r} is the name of a built-in template: choose "
                                     "another name", name=template.name))
        if self.exists(template.name) and not replace_existing:
            raise TemplateError(_("a template named {name!r} already exists", name=template.name),
                                template=template.name)
        self._write(template)
        return template

    def update(self, name: str, /, **changes: Any) -> Template:
        """Change fields of a user template (``name`` renames it); returns the new version."""
        old = self._writable(name)
        allowed = {"name", "body", "title", "description", "variables", "tags", "lang",
                   "category"}
        bad = sorted(set(changes) - allowed)
        if bad:
            raise TemplateError(_("cannot change {value!r} of a template",
                                  value=bad[0]), template=name)
        if "variables" in changes:
            changes["variables"] = tuple(changes["variables"])
        if "tags" in changes:
            changes["tags"] = normalize_tags(changes["tags"])
        new = replace(old, **changes, updated=time.time())
        new.validate()
        if new.name != name and self.exists(new.name):
            raise TemplateError(_("a template named {name!r} already exists", name=new.name),
                                template=new.name)
        if new.name != name:
            self._table().remove(_by_name(name))
        self._write(new)
        return new

    def duplicate(self, name: str, new_name: str | None = None) -> Template:
        """A user copy of any template (the way to edit a built-in one)."""
        source = self.get(name)
        if new_name is None:
            new_name = f"{name}-copy"
            n = 2
            while self.exists(new_name):
                new_name, n = f"{name}-copy-{n}", n + 1
        now = time.time()
        return self.add(replace(source, name=new_name, builtin=False, created=now, updated=now))

    def delete(self, name: str) -> None:
        self._writable(name)
        self._table().remove(_by_name(name))

    def add_tags(self, name: str, *tags: str) -> Template:
        return self.update(name, tags=(*self.get(name).tags, *tags))

    def remove_tags(self, name: str, *tags: str) -> Template:
        drop = set(normalize_tags(tags))
        return self.update(name, tags=[t for t in self.get(name).tags if t not in drop])

    def import_file(self, path: Path | str, *, replace_existing: bool = False) -> list[Template]:
        """Add every template in a JSON (or YAML) file; nothing is added if any is bad."""
        from tui.prompting.builtin_templates import read_template_file

        templates = read_template_file(path)
        for t in templates:
            if t.name in self._builtins:
                raise ReadOnlyTemplate(_("{path}: {name!r} is the name of a built-in template",
                                         path=path, name=t.name))
            if not replace_existing and self.exists(t.name):
                raise TemplateError(_("{path}: a template named {name!r} already exists (import "
                                      "with replace to overwrite it)", path=path, name=t.name),
                    template=t.name)
        return [self.add(t, replace_existing=replace_existing) for t in templates]

    def export_file(self, names: Sequence[str], path: Path | str) -> list[Template]:
        from tui.prompting.builtin_templates import write_template_file

        templates = [self.get(n) for n in names]
        write_template_file(templates, path)
        return templates

    def _writable(self, name: str) -> Template:
        template = self.get(name)
        if template.builtin:
            raise ReadOnlyTemplate(_("{name!r} is built in and cannot be changed: duplicate it "
                                     "and edit the copy", name=name))
        return template

    def _write(self, template: Template) -> None:
        doc = template.to_dict()
        doc.update(created=template.created, updated=template.updated)
        self._table().upsert(doc, _by_name(template.name))


def _by_name(name: str) -> Any:
    from tinydb import where

    return where("name") == name


def _score(t: Template, query: str) -> int:
    fields = ((t.name.lower(), 8), (" ".join(t.tags), 6), (t.title.lower(), 5),
              (t.category.lower(), 4), (t.description.lower(), 3), (t.body.lower(), 1))
    total = 0
    for word in query.lower().split():
        hits = sum(weight for text, weight in fields if word in text)
        if not hits:
            return 0
        total += hits
    if query.strip().lower() == t.name:
        total += 100
    return total
