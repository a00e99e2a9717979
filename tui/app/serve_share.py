"""Serve while I chat: the app's loaded model behind the OpenAI-compatible API on loopback.

The engine is registered in an ``EnginePool`` with the app's generation lock, so an API request
and a chat reply never generate on the engine at the same time: they take turns.
"""

from __future__ import annotations

import threading

from tui.engine.base import Engine
from tui.serve import DEFAULT_PORT, ApiServer, EnginePool

HOST = "127.0.0.1"


def start_api(engine: Engine, name: str, lock: threading.Lock,
              port: int = DEFAULT_PORT) -> ApiServer:
    """Start serving ``engine`` as model ``name``; raises OSError when the port is taken."""
    pool = EnginePool()
    pool.register(name, engine, lock=lock, default=True)
    return ApiServer(pool, host=HOST, port=port).start()


def stop_api(server: ApiServer) -> None:
    """Stop serving (cancels the API's generations in flight); the engine stays loaded."""
    server.stop()
