"""Constrained output in the worker: a JSON schema becomes a GBNF grammar.

The conversion is llama-cpp-python's own (``llama_cpp.llama_grammar.json_schema_to_gbnf``);
keywords it cannot enforce were already refused by ``tui.engine.json_schema`` in the caller.
"""

from __future__ import annotations

import json

from tui.engine.json_schema import check_schema
from tui.i18n import _

ANY_JSON_OBJECT = "{}"


def schema_grammar(schema_text: str) -> str:
    """The GBNF grammar for a schema; ValueError with one line when it cannot be built."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        check_schema(schema_text)
    except Exception as exc:  # InvalidParameter: the message names the keywords
        raise ValueError(str(exc)) from None
    text = schema_text
    if json.loads(schema_text) in ({}, True):
        text = json.dumps({"type": "object"})
    try:
        grammar = str(json_schema_to_gbnf(text))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(_("json_schema cannot be turned into a grammar: {exc}",
                           exc=exc)[:300]) from None
    # the converter lets raw control characters (a newline) into strings, which JSON forbids:
    # the output would then not parse
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
