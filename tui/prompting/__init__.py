"""What goes into the prompt: the conversation, system prompt (later templates, memory, budget).

No Textual import here: the CLI and the benchmarks build prompts the same way the app does.
"""

from tui.prompting.chat import build_messages

__all__ = ["build_messages"]
