"""``lmdesk tools list [--json]``: the built-in tools and every configured MCP server's tools.

``tui/cli.py`` adds the parser with ``add_tools_parser`` and calls ``cmd_tools``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from tui.i18n import _
from tui.tools.base import ToolError
from tui.tools.toolbox import BUILTIN_NAMES, ToolBox, ToolConfig


def add_tools_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "tools", help=_("tools the model may call: built-in ones and MCP servers'"))
    actions = p.add_subparsers(dest="tools_command")
    listing = actions.add_parser("list", help=_("list every tool"))
    listing.add_argument("--json", action="store_true", help=_("one JSON object"))
    return p


def cmd_tools(args: argparse.Namespace, config: ToolConfig, out: TextIO) -> int:
    box = ToolBox(config, kb_search=lambda _q: "")
    rows: list[dict[str, Any]] = []
    try:
        for name in BUILTIN_NAMES:
            tools, _problems = box.resolve([name])
            for tool in tools:
                rows.append({"enable": name, "name": tool.name, "source": "builtin",
                             "description": tool.description,
                             "parameters": dict(tool.parameters)})
        servers: list[dict[str, Any]] = []
        for server in config.mcp_servers:
            entry: dict[str, Any] = {"name": server.name, "enable": f"mcp:{server.name}",
                                     "where": server.where, "error": None}
            try:
                for tool in box.hub.tools(server.name):
                    rows.append({"enable": f"mcp:{server.name}", "name": tool.name,
                                 "source": tool.source, "description": tool.description,
                                 "parameters": dict(tool.parameters)})
            except ToolError as exc:
                entry["error"] = str(exc)
            servers.append(entry)
    finally:
        box.close()
    if args.json:
        out.write(json.dumps({"tools": rows, "mcp_servers": servers,
                              "problems": list(config.problems)}, ensure_ascii=False) + "\n")
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        out.write(f"{row['name']:<{width}}  {row['enable']:<14} {row['description']}\n")
    for listed in servers:
        if listed["error"]:
            out.write(_("mcp:{name}: {error}\n", name=listed['name'], error=listed['error']))
    for problem in config.problems:
        out.write(_("config.toml: {problem}\n", problem=problem))
    if not config.mcp_servers:
        out.write(_("No MCP server is configured ([mcp.servers.NAME] in config.toml).\n"))
    return 0
