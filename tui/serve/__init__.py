"""``lmdesk serve``: an OpenAI-compatible HTTP API over the same engines the app uses.

Nothing here imports Textual. ``ApiServer(pool, host, port, api_key).start()`` serves from a
background thread, so the app can share the model it has loaded while the user chats.
"""

from tui.serve.pool import (
    ClientGone,
    EnginePool,
    Lease,
    ModelEntry,
    PoolError,
    QueueFull,
    UnknownModel,
)
from tui.serve.server import (
    DEFAULT_PORT,
    ApiServer,
    ServerLimits,
    ServerSnapshot,
    ServerStats,
    UnsafeBind,
    check_bind,
)

__all__ = [
    "DEFAULT_PORT",
    "ApiServer",
    "ClientGone",
    "EnginePool",
    "Lease",
    "ModelEntry",
    "PoolError",
    "QueueFull",
    "ServerLimits",
    "ServerSnapshot",
    "ServerStats",
    "UnknownModel",
    "UnsafeBind",
    "check_bind",
]
