"""MCP servers' tools, through the official ``mcp`` SDK.

Servers are configured in config.toml::

    [mcp.servers.time]
    command = "mcp-server-time"          # a stdio server: started on first use
    args = ["--local-timezone", "Europe/Madrid"]
    env = { }
    timeout = 20                         # seconds per call (default 30)

    [mcp.servers.notes]
    url = "http://127.0.0.1:8000/mcp"    # a streamable-HTTP server

The SDK is asynchronous; the hub runs one event loop on a daemon thread and each server's
session lives there from its first use until ``close()``. Callers (a turn's worker thread,
``lmdesk tools list``) block on it with a timeout. A server that fails to start, crashes,
hangs or answers an error gives a ``ToolError`` with one line; the next use starts it again.
A server on another machine is network use: refused in offline mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tui.i18n import _
from tui.tools.base import Tool, ToolError, clip

DEFAULT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def where(self) -> str:
        return self.url or " ".join([self.command, *self.args])


def parse_servers(raw: object) -> tuple[list[McpServerConfig], list[str]]:
    """``[mcp.servers.NAME]`` tables from config.toml; a line per bad entry (left out)."""
    servers: list[McpServerConfig] = []
    problems: list[str] = []
    tables = raw.get("servers", {}) if isinstance(raw, Mapping) else {}
    if not isinstance(tables, Mapping):
        return [], [_("mcp.servers should be a table of servers")]
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            problems.append(_("mcp.servers.{name} should be a table", name=name))
            continue
        command, url = table.get("command", ""), table.get("url", "")
        args, env = table.get("args", []), table.get("env", {})
        timeout = table.get("timeout", DEFAULT_TIMEOUT_S)
        if not isinstance(command, str) or not isinstance(url, str) or bool(command) == bool(url):
            problems.append(_("mcp.servers.{name} needs either command or url", name=name))
            continue
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            problems.append(_("mcp.servers.{name}.args should be a list of strings", name=name))
            continue
        if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
            problems.append(_("mcp.servers.{name}.env should map names to strings", name=name))
            continue
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            problems.append(_("mcp.servers.{name}.timeout should be a number of seconds",
                              name=name))
            continue
        if url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(_("mcp.servers.{name}.url should be an http(s) URL", name=name))
            continue
        servers.append(McpServerConfig(str(name), command, tuple(args), dict(env), url,
                                       float(timeout)))
    return servers, problems


class _Loop:
    """One asyncio loop on a daemon thread, for every server's session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="lmdesk-mcp")
        self.thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class _Connection:
    """A server's session, held open inside one task on the hub's loop."""

    def __init__(self, config: McpServerConfig, log_path: str) -> None:
        self.config = config
        self.log_path = log_path
        self.client: Any = None
        self._closed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = asyncio.Event()
        self._task = asyncio.create_task(self._hold(ready))
        await ready

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        from mcp import ClientSession, StdioServerParameters

        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.config.url:
                    from mcp.client.streamable_http import streamable_http_client

                    streams = await stack.enter_async_context(
                        streamable_http_client(self.config.url))
                else:
                    from mcp.client.stdio import stdio_client

                    params = StdioServerParameters(
                        command=self.config.command, args=list(self.config.args),
                        env={**os.environ, **self.config.env},
                    )
                    # a server's own log must never reach a full-screen app's terminal
                    log = stack.enter_context(open(self.log_path, "a", encoding="utf-8"))  # noqa: SIM115
                    streams = await stack.enter_async_context(stdio_client(params, errlog=log))
                session = await stack.enter_async_context(ClientSession(
                    streams[0], streams[1], read_timeout_seconds=self.config.timeout_s))
                await session.initialize()
                self.client = session
                ready.set_result(None)
                assert self._closed is not None
                await self._closed.wait()
        except BaseException as exc:  # a failed start or a crash: the waiting caller hears it
            if not ready.done():
                ready.set_exception(exc)
        finally:
            self.client = None

    async def close(self) -> None:
        if self._closed is not None:
            self._closed.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)


class McpHub:
    """The configured servers, started on first use. Thread-safe."""

    def __init__(self, servers: list[McpServerConfig], log_dir: str | None = None) -> None:
        self.servers = {s.name: s for s in servers}
        self.log_dir = log_dir
        """Where each stdio server's stderr goes (``mcp-NAME.log``); None: nowhere."""
        self._loop: _Loop | None = None
        self._connections: dict[str, _Connection] = {}
        self._lock = threading.Lock()
        self._tools: dict[str, list[Tool]] = {}

    def _run(self, coro: Any, timeout: float) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
            loop = self._loop
        return loop.run(coro, timeout)

    def _check_network(self, config: McpServerConfig) -> None:
        if not config.url:
            return
        from tui.offline import guard_installed, is_local_host

        host = urlsplit(config.url).hostname or ""
        if guard_installed() and not is_local_host(host):
            raise ToolError(_("the MCP server {name} is on another machine ({host}) and lmdesk "
                              "is offline: start it with --online to use it",
                              name=config.name, host=host))

    def _connection(self, name: str) -> _Connection:
        config = self.servers.get(name)
        if config is None:
            raise ToolError(_("no MCP server called {name!r} in config.toml (configured: "
                              "{value})", name=name, value=', '.join(self.servers) or _('none')))
        self._check_network(config)
        conn = self._connections.get(name)
        if conn is not None and conn.client is not None:
            return conn
        log = os.path.join(self.log_dir, f"mcp-{name}.log") if self.log_dir else os.devnull
        conn = _Connection(config, log)
        try:
            self._run(self._opened(conn, config), START_TIMEOUT_S)
        except TimeoutError:
            raise ToolError(_("the MCP server {name} did not start within {START_TIMEOUT_S:.0f} "
                              "s ({where})",
                              name=name, START_TIMEOUT_S=START_TIMEOUT_S,
                              where=config.where)) from None
        except ToolError:
            raise
        except BaseException as exc:
            raise ToolError(_("the MCP server {name} could not start ({where}): {one_line}",
                              name=name, where=config.where, one_line=_one_line(exc))) from None
        self._connections[name] = conn
        return conn

    async def _opened(self, conn: _Connection, config: McpServerConfig) -> None:
        if config.url:
            from tui.offline import allow_network

            with allow_network(config.url):
                await conn.open()
        else:
            await conn.open()

    def tools(self, name: str) -> list[Tool]:
        """The server's tools (listed once per session); ToolError with one line."""
        with self._lock:
            cached = self._tools.get(name)
        if cached is not None and name in self._connections:
            return cached
        conn = self._connection(name)
        config = conn.config
        try:
            listed = self._run(conn.client.list_tools(), config.timeout_s)
        except TimeoutError:
            self._drop(name)
            raise ToolError(_("the MCP server {name} did not list its tools within "
                              "{timeout_s:g} s", name=name, timeout_s=config.timeout_s)) from None
        except BaseException as exc:
            self._drop(name)
            raise ToolError(_("the MCP server {name} failed: {one_line}",
                              name=name, one_line=_one_line(exc))) from None
        tools = [self._tool(name, t) for t in listed.tools]
        with self._lock:
            self._tools[name] = tools
        return tools

    def _tool(self, server: str, spec: Any) -> Tool:
        schema = getattr(spec, "input_schema", None) or {"type": "object", "properties": {}}

        def run(args: dict[str, Any]) -> str:
            return self.call(server, spec.name, args)

        return Tool(spec.name, spec.description or "", dict(schema), run, f"mcp:{server}")

    def call(self, server: str, tool: str, args: dict[str, Any]) -> str:
        conn = self._connection(server)
        timeout = conn.config.timeout_s
        try:
            result = self._run(conn.client.call_tool(tool, args), timeout + 1)
        except TimeoutError:
            self._drop(server)
            raise ToolError(_("{tool} on the MCP server {server} gave no answer within "
                              "{timeout:g} s", tool=tool, server=server, timeout=timeout)) from None
        except BaseException as exc:
            self._drop(server)
            raise ToolError(_("{tool} on the MCP server {server} failed: {one_line}",
                              tool=tool, server=server, one_line=_one_line(exc))) from None
        text = "\n".join(getattr(c, "text", "") or "" for c in getattr(result, "content", []))
        if getattr(result, "is_error", False):
            raise ToolError(_("{tool} answered an error: {value}",
                              tool=tool, value=_one_line(text) or _('no detail')))
        return clip(text)

    def _drop(self, name: str) -> None:
        conn = self._connections.pop(name, None)
        with self._lock:
            self._tools.pop(name, None)
        if conn is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._run(conn.close(), 6)

    def close(self) -> None:
        for name in list(self._connections):
            self._drop(name)
        if self._loop is not None:
            self._loop.stop()
            self._loop = None


def _one_line(exc: BaseException | str) -> str:
    if isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = str(exc) if not isinstance(exc, str) else exc
    text = " ".join(text.split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return text[:300]
