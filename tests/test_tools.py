"""Built-in tools and MCP servers: what runs, what is refused, and failures in one line."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from tui.tools import ToolBox, ToolConfig, ToolError
from tui.tools.base import parse_arguments
from tui.tools.builtin import Folders, calculate, file_tools, time_tool
from tui.tools.mcp_hub import McpHub, McpServerConfig, parse_servers

TEST_SERVER = McpServerConfig("test", command=sys.executable,
                              args=("-m", "tests.mcp_helpers.test_server"), timeout_s=4)


def test_calculator_does_arithmetic_and_nothing_else() -> None:
    assert calculate("(17.5 * 3) / 4") == 13.125
    assert calculate("2 ^ 10") == 1024
    assert calculate("sqrt(16) + max(1, 2)") == 6
    assert calculate("-3 % 2") == 1
    for bad in ("__import__('os').system('true')", "open('/etc/passwd')", "x + 1",
                "[1, 2]", "1 if 1 else 2", "2 ** 99999", "1/0", "a" * 600):
        with pytest.raises(ToolError):
            calculate(bad)


def test_time_tool_here_and_in_a_zone() -> None:
    fixed = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    tool = time_tool(lambda: fixed)
    assert tool.run({}).startswith("Tuesday 2026-12-01 12:00:00")
    assert "13:00:00 CET" in tool.run({"timezone": "Europe/Madrid"})
    with pytest.raises(ToolError, match="unknown time zone"):
        tool.run({"timezone": "Mars/Olympus"})


def test_file_tools_never_leave_the_allowed_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "notes"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "todo.txt").write_text("buy milk\n")
    (allowed / "sub" / "deep.md").write_text("# deep\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("the password\n")
    os.symlink(secret, allowed / "link-out.txt")
    os.symlink(tmp_path, allowed / "sub" / "up")
    read, listing = file_tools(Folders([allowed]))
    assert read.run({"path": "todo.txt"}) == "buy milk\n"
    assert read.run({"path": str(allowed / "sub" / "deep.md")}) == "# deep\n"
    assert "sub/" in listing.run({"path": str(allowed)}) and "todo.txt" in listing.run(
        {"path": str(allowed)})
    for escape in ("../secret.txt", str(secret), "link-out.txt", "sub/up/secret.txt",
                   "sub/../../secret.txt"):
        with pytest.raises(ToolError, match="outside the allowed folders"):
            read.run({"path": escape})
    with pytest.raises(ToolError, match="does not exist"):
        read.run({"path": "nope.txt"})
    with pytest.raises(ToolError, match="no folder is allowed"):
        file_tools(Folders([]))[0].run({"path": "todo.txt"})


def test_arguments_must_be_a_json_object() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1} and parse_arguments("") == {}
    for bad in ("[1]", "{oops", '"text"'):
        with pytest.raises(ToolError):
            parse_arguments(bad)


def test_toolbox_resolves_names_and_says_what_it_left_out(tmp_path: Path) -> None:
    box = ToolBox(ToolConfig(folders=(str(tmp_path),)))
    tools, problems = box.resolve(["calc", "time", "files", "kb", "nonsense", "mcp:nowhere"])
    assert [t.name for t in tools] == ["calculator", "current_time", "read_file", "list_folder"]
    assert len(problems) == 3
    assert any("knowledge base" in p for p in problems)
    assert any("unknown tool 'nonsense'" in p for p in problems)
    assert any("no MCP server called 'nowhere'" in p for p in problems)
    box.close()


def test_mcp_config_is_checked() -> None:
    servers, problems = parse_servers({"servers": {
        "ok": {"command": "mcp-server-time", "args": ["--x"]},
        "web": {"url": "http://127.0.0.1:9/mcp", "timeout": 5},
        "both": {"command": "a", "url": "http://x"},
        "badargs": {"command": "a", "args": "no"},
        "ftp": {"url": "ftp://x"},
    }})
    assert [s.name for s in servers] == ["ok", "web"]
    assert servers[1].timeout_s == 5.0
    assert len(problems) == 3


@pytest.fixture
def hub(tmp_path: Path) -> McpHub:
    time_exe = Path(sys.executable).with_name("mcp-server-time")
    return McpHub([TEST_SERVER, McpServerConfig("time", command=str(time_exe), timeout_s=20),
                   McpServerConfig("broken", command=str(tmp_path / "no-such-server")),
                   McpServerConfig("far", url="http://203.0.113.7:8000/mcp")],
                  log_dir=str(tmp_path))


def test_a_real_mcp_server_from_pypi(hub: McpHub) -> None:
    tools = {t.name: t for t in hub.tools("time")}
    assert "get_current_time" in tools and tools["get_current_time"].source == "mcp:time"
    assert "timezone" in tools["get_current_time"].parameters["properties"]
    answer = tools["get_current_time"].run({"timezone": "Europe/Madrid"})
    assert '"timezone": "Europe/Madrid"' in answer
    hub.close()


def test_an_sdk_server_lists_calls_fails_crashes_and_hangs(hub: McpHub, tmp_path: Path) -> None:
    names = [t.name for t in hub.tools("test")]
    assert names == ["add", "shout", "fail", "crash", "slow"]
    assert hub.call("test", "add", {"a": 2, "b": 3}) == "5.0"
    with pytest.raises(ToolError, match="answered an error"):
        hub.call("test", "fail", {"reason": "x"})
    with pytest.raises(ToolError, match="failed"):
        hub.call("test", "crash", {})
    assert hub.call("test", "shout", {"text": "back"}) == "BACK"  # started again
    with pytest.raises(ToolError, match=r"no answer within 4 s|timed out"):
        hub.call("test", "slow", {"seconds": 30})
    assert hub.call("test", "add", {"a": 1, "b": 1}) == "2.0"
    # the server's own log went to its file, not to our terminal
    assert "failed on purpose" in (tmp_path / "mcp-test.log").read_text()
    hub.close()


def test_a_server_that_does_not_start_is_one_line(hub: McpHub) -> None:
    with pytest.raises(ToolError) as info:
        hub.tools("broken")
    assert "could not start" in str(info.value) and "\n" not in str(info.value)


def test_a_remote_mcp_server_is_refused_offline(hub: McpHub) -> None:
    from tui.offline import install_guard, uninstall_guard

    install_guard()
    try:
        with pytest.raises(ToolError, match="offline"):
            hub.tools("far")
    finally:
        uninstall_guard()
