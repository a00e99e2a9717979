"""Errors the engine raises: each message names the problem and what to do."""


class EngineError(Exception):
    """A failure the user should read: one line, the problem and the fix."""


class InvalidParameter(EngineError):
    """A load or sampling parameter has a value the engine cannot use."""


class ModelLoadError(EngineError):
    """The model file could not be loaded (missing, not GGUF, truncated, too big...)."""


class WorkerDied(EngineError):
    """The worker process ended without being asked to (a native crash or a kill)."""


class ToolsUnsupported(EngineError):
    """This engine (or model) cannot call tools: the caller may answer without them."""


class PromptTooLong(EngineError):
    """The prompt does not fit in the context window."""
