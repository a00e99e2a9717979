"""The tools a conversation has enabled, gathered for a turn.

Names a user enables: ``calc``, ``time``, ``files``, ``kb`` (built in, see ``builtin.py``) and
``mcp:SERVER`` for every tool of a configured MCP server (``mcp_hub.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui.i18n import N_, _
from tui.tools.base import Tool, ToolError
from tui.tools.builtin import Folders, calculator_tool, file_tools, knowledge_tool, time_tool
from tui.tools.mcp_hub import McpHub, McpServerConfig, parse_servers

BUILTIN_NAMES: dict[str, str] = {
    "calc": N_("calculator: exact arithmetic"),
    "time": N_("current_time: the date and time, here or in a time zone"),
    "files": N_("read_file, list_folder: text files in the folders you allowed"),
    "kb": N_("search_knowledge: the knowledge bases attached to the conversation"),
}


@dataclass(frozen=True)
class ToolConfig:
    folders: tuple[str, ...] = ()
    """Folders the file tools may read (config.toml ``tool_folders``)."""
    always_allow: tuple[str, ...] = ()
    """Tool names that run without asking (config.toml ``tools_always_allow``)."""
    mcp_servers: tuple[McpServerConfig, ...] = ()
    problems: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, folders: Sequence[str], always: Sequence[str],
                      mcp: Mapping[str, Any]) -> ToolConfig:
        servers, problems = parse_servers(mcp)
        return cls(tuple(folders), tuple(always), tuple(servers), tuple(problems))


class ToolBox:
    """Builds the tools for a set of enabled names. The MCP hub is shared and outlives it."""

    def __init__(self, config: ToolConfig, hub: McpHub | None = None,
                 kb_search: Callable[[str], str] | None = None) -> None:
        self.config = config
        self.hub = hub if hub is not None else McpHub(list(config.mcp_servers))
        self.kb_search = kb_search

    def names(self) -> list[str]:
        """Every name a user may enable."""
        return [*BUILTIN_NAMES, *(f"mcp:{s.name}" for s in self.config.mcp_servers)]

    def resolve(self, enabled: Sequence[str]) -> tuple[list[Tool], list[str]]:
        """The tools for ``enabled``, and a line for each that could not be had (an unknown
        name, an MCP server that failed): the turn goes on without it."""
        tools: list[Tool] = []
        problems: list[str] = []
        for name in enabled:
            try:
                tools.extend(self._tools_for(name))
            except ToolError as exc:
                problems.append(str(exc))
        seen: set[str] = set()
        unique = []
        for tool in tools:
            if tool.name in seen:
                problems.append(_("two tools are called {name}: the second is left out",
                                  name=tool.name))
                continue
            seen.add(tool.name)
            unique.append(tool)
        return unique, problems

    def _tools_for(self, name: str) -> list[Tool]:
        if name == "calc":
            return [calculator_tool()]
        if name == "time":
            return [time_tool()]
        if name == "files":
            return file_tools(Folders(self.config.folders))
        if name == "kb":
            if self.kb_search is None:
                raise ToolError(_("search_knowledge needs a knowledge base attached to the "
                                  "conversation"))
            return [knowledge_tool(self.kb_search)]
        if name.startswith("mcp:"):
            return self.hub.tools(name.removeprefix("mcp:"))
        raise ToolError(_("unknown tool {name!r} (known: {join})",
                          name=name, join=', '.join(self.names())))

    def close(self) -> None:
        self.hub.close()
