"""lmdesk: a full-screen terminal workstation for local language models."""

__version__ = "0.1.0"
