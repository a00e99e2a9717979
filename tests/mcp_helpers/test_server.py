"""An MCP server written with the official SDK, for the tests: stdio by default, or
streamable HTTP on a port (``--http PORT``)."""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("lmdesk-test")


@server.tool()
def add(a: float, b: float) -> str:
    """Add two numbers."""
    return str(a + b)


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ValueError(f"failed on purpose: {reason}")


@server.tool()
def crash() -> str:
    """Ends the server process at once."""
    os._exit(3)


@server.tool()
def slow(seconds: float) -> str:
    """Answers after a while."""
    time.sleep(seconds)
    return "finally"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.settings.port = int(sys.argv[2])  # type: ignore[attr-defined]
        server.run("streamable-http")
    else:
        server.run("stdio")
