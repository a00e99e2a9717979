"""Which JSON-schema keywords constrained decoding can honour, checked before a request is sent.

The worker turns a schema into a GBNF grammar with llama-cpp-python's converter, which
silently ignores what it cannot express (``minimum``, ``uniqueItems``...): output would then
parse but break the schema. So a schema using such a keyword is refused up front, naming it.
Pure Python: the caller's process checks, the worker converts.
"""

from __future__ import annotations

import json
from typing import Any

from tui.engine.errors import InvalidParameter
from tui.i18n import _

SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "pattern", "format", "minLength", "maxLength",
})
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
})
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
                     "uuid5"})
TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
SCHEMA_MAPS = ("properties", "$defs", "definitions")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def parse_schema(text: str) -> Any:
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidParameter(_("json_schema is not valid JSON")) from None
    if not isinstance(schema, dict | bool):
        raise InvalidParameter(_("json_schema must be a JSON object (a schema)"))
    return schema


def check_schema(text: str) -> None:
    """Raise ``InvalidParameter`` naming every keyword constrained decoding cannot honour."""
    schema = parse_schema(text)
    unsupported: set[str] = set()
    problems: list[str] = []
    _walk(schema, unsupported, problems, depth=0)
    if unsupported:
        names = ", ".join(sorted(unsupported))
        raise InvalidParameter(
            _("json_schema uses keywords constrained output cannot enforce: {names} (remove "
              "them or check the output yourself)", names=names)
        )
    if problems:
        raise InvalidParameter(_("json_schema: {value}", value=problems[0]))


def _walk(node: Any, unsupported: set[str], problems: list[str], depth: int) -> None:
    if depth > 64:
        problems.append(_("nested deeper than 64 levels"))
        return
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        problems.append(_("a schema must be an object, got {value}", value=json.dumps(node)[:40]))
        return
    for key, value in node.items():
        if key in ANNOTATIONS:
            continue
        if key not in SUPPORTED:
            unsupported.add(key)
            continue
        if key in SCHEMA_MAPS:
            if isinstance(value, dict):
                for sub in value.values():
                    _walk(sub, unsupported, problems, depth + 1)
            else:
                problems.append(_("{key} must be an object", key=key))
        elif key in SCHEMA_LISTS:
            if isinstance(value, list):
                for sub in value:
                    _walk(sub, unsupported, problems, depth + 1)
            else:
                problems.append(_("{key} must be a list", key=key))
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            items = value if isinstance(value, list) else [value]
            for sub in items:
                _walk(sub, unsupported, problems, depth + 1)
        elif key == "format" and value not in FORMATS:
            unsupported.add(f"format: {value}")
        elif key == "type":
            types = value if isinstance(value, list) else [value]
            bad = [t for t in types if t not in TYPES]
            if bad:
                problems.append(_("unknown type {value!r}", value=bad[0]))
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            problems.append(_("only local references (#/...) are supported, got {value!r}",
                              value=value))
        elif key == "required" and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            problems.append(_("required must be a list of property names"))
