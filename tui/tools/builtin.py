"""The built-in tools, each off until the user enables it. No shell tool is built in.

- ``calculator``: arithmetic parsed with ``ast`` (numbers, + - * / // % **, parentheses and a
  few math functions); nothing is evaluated as Python.
- ``current_time``: the date and time, here or in a named time zone.
- ``read_file`` / ``list_folder``: inside the folders the user allowed, never outside (paths
  resolved, symlinks followed and checked, ``..`` included).
- ``search_knowledge``: the knowledge bases attached to the conversation.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tui.i18n import _
from tui.tools.base import Tool, ToolError, clip

MAX_FILE_BYTES = 256 * 1024
MAX_LIST = 500
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos,
                                                          ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos,
    "tan": math.tan, "min": min, "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression; ToolError for anything else."""
    if len(expression) > 500:
        raise ToolError(_("the expression is too long (500 characters at most)"))
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(_("{expression!r} is not an arithmetic expression",
                          expression=expression)) from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 10_000:
                raise ToolError(_("that power is too large"))
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and not node.keywords):
            return _FUNCTIONS[node.func.id](*(value(a) for a in node.args))
        raise ToolError(_("{unparse!r} is not allowed in a calculation", unparse=ast.unparse(node)))

    try:
        result = value(tree)
    except ZeroDivisionError:
        raise ToolError(_("division by zero")) from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise ToolError(_("cannot calculate that: {exc}", exc=exc)) from None
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return int(result)
    if not isinstance(result, int | float):
        raise ToolError(_("that is not a number"))
    return result


def calculator_tool() -> Tool:
    def run(args: dict[str, Any]) -> str:
        expression = args.get("expression")
        if not isinstance(expression, str):
            raise ToolError(_("give the expression as text in 'expression'"))
        return str(calculate(expression))

    return Tool("calculator", "Evaluate an arithmetic expression exactly, e.g. "
                "'(17.5 * 3) / 4' or 'sqrt(2)'.",
                {"type": "object", "properties": {"expression": {
                    "type": "string", "description": "the arithmetic expression"}},
                 "required": ["expression"]}, run)


def time_tool(now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone()) -> Tool:
    def run(args: dict[str, Any]) -> str:
        zone = args.get("timezone")
        moment = now()
        if isinstance(zone, str) and zone.strip():
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                moment = moment.astimezone(ZoneInfo(zone.strip()))
            except (ZoneInfoNotFoundError, ValueError):
                raise ToolError(_("unknown time zone {zone!r} (use names like 'Europe/Madrid')",
                                  zone=zone)) from None
        return moment.strftime("%A %Y-%m-%d %H:%M:%S %Z (UTC%z)")

    return Tool("current_time", "The current date and time, here or in a time zone.",
                {"type": "object", "properties": {"timezone": {
                    "type": "string", "description": "an IANA time zone such as "
                    "'America/Mexico_City'; empty for this machine's"}}}, run)


class Folders:
    """The folders the file tools may read, and the one check every path goes through."""

    def __init__(self, roots: Sequence[str | Path]) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in roots]

    def resolve(self, wanted: str) -> Path:
        if not self.roots:
            raise ToolError(_("no folder is allowed for the file tools (add one in the tools "
                              "screen or config.toml's tool_folders)"))
        raw = Path(wanted).expanduser()
        candidates = [raw] if raw.is_absolute() else [root / raw for root in self.roots]
        for candidate in candidates:
            real = candidate.resolve()  # follows every symlink, removes ..
            inside = any(real == root or real.is_relative_to(root) for root in self.roots)
            if inside and real.exists():
                return real
        if any(c.resolve().exists() for c in candidates):
            raise ToolError(_("{wanted} is outside the allowed folders", wanted=wanted))
        raise ToolError(_("{wanted} does not exist in the allowed folders", wanted=wanted))


def file_tools(folders: Folders) -> list[Tool]:
    def read(args: dict[str, Any]) -> str:
        path = folders.resolve(str(args.get("path", "")))
        if not path.is_file():
            raise ToolError(_("{get} is not a file", get=args.get('path')))
        data = path.read_bytes()[:MAX_FILE_BYTES]
        if b"\x00" in data[:4096]:
            raise ToolError(_("{get} is not a text file", get=args.get('path')))
        return clip(data.decode("utf-8", "replace"))

    def listing(args: dict[str, Any]) -> str:
        wanted = str(args.get("path") or ".")
        if wanted in (".", ""):
            return "\n".join(str(root) + "/" for root in folders.roots)
        path = folders.resolve(wanted)
        if not path.is_dir():
            raise ToolError(_("{wanted} is not a folder", wanted=wanted))
        rows = []
        for entry in sorted(path.iterdir())[:MAX_LIST]:
            rows.append(entry.name + ("/" if entry.is_dir() else ""))
        return "\n".join(rows) or "(empty)"

    schema = {"type": "object", "properties": {"path": {
        "type": "string", "description": "a path inside an allowed folder"}},
        "required": ["path"]}
    return [
        Tool("read_file", "Read a text file from the folders the user allowed.", schema, read),
        Tool("list_folder", "List a folder the user allowed ('.' lists the allowed folders).",
             schema, listing),
    ]


def knowledge_tool(search: Callable[[str], str]) -> Tool:
    def run(args: dict[str, Any]) -> str:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError(_("give what to look for in 'query'"))
        return clip(search(query.strip()))

    return Tool("search_knowledge", "Search the knowledge bases attached to this "
                "conversation; returns numbered passages with their sources.",
                {"type": "object", "properties": {"query": {"type": "string"}},
                 "required": ["query"]}, run)
