"""Tools the model may call: built-in ones (``builtin.py``: a calculator, the date and time,
files in folders the user allowed, an attached knowledge base) and the tools of MCP servers
(``mcp_hub.py``). ``ToolBox`` (``toolbox.py``) gathers the enabled ones for a turn, gives the
engine their specs and runs a call. Whether a call may run is the caller's decision: an
approval callback it supplies (``tui.session.turn``). No Textual here.
"""

from tui.tools.base import Tool, ToolError
from tui.tools.toolbox import BUILTIN_NAMES, ToolBox, ToolConfig

__all__ = ["BUILTIN_NAMES", "Tool", "ToolBox", "ToolConfig", "ToolError"]
