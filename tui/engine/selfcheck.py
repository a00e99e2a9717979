"""``python -m tui.engine.selfcheck``: can this llama.cpp build run the default model here?

Loads the packaged model in a worker and generates a few tokens. Exit 0 when it works; else
one line saying what failed (a build for CPU instructions this machine refuses dies with SIGILL).
"""

from __future__ import annotations

import sys

from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams
from tui.models.registry import ModelNotFound, default_model


def check() -> str | None:
    """None when a real reply came back, else why not."""
    try:
        model = default_model()
    except ModelNotFound as exc:
        return str(exc)
    engine = LocalEngine(LoadParams(model_path=str(model.path), n_ctx=256))
    try:
        engine.load()
        events = list(
            engine.generate([ChatMessage("user", "Say hi")], SamplingParams(max_tokens=4))
        )
    except Exception as exc:
        return str(exc)
    finally:
        engine.unload()
    done = events[-1]
    if not isinstance(done, Done) or done.error:
        return done.error if isinstance(done, Done) else "no reply"
    return None


def main() -> int:
    problem = check()
    if problem:
        print(f"lmdesk selfcheck: {problem}", file=sys.stderr)
        return 1
    print("lmdesk selfcheck: the default model answers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
