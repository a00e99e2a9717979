"""``python -m tui.doctor.selfcheck``: can this llama.cpp build run the default model here?

Loads the packaged model in a worker and generates a few tokens. Exit 0 when it works; else
one line saying what failed (a build for CPU instructions this machine refuses dies with SIGILL).
With ``LMDESK_SELFCHECK_RPC=1`` (set by scripts/install) the build must also carry llama.cpp's
RPC backend: pip reuses a wheel it cached from a build without it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tui.engine.local import LocalEngine
from tui.engine.protocol import ChatMessage, Done, LoadParams, SamplingParams
from tui.i18n import _
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


def has_rpc_backend() -> bool:
    """Whether the installed llama-cpp-python ships libggml-rpc (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any((Path(folder) / "lib").glob("libggml-rpc*"))
               for folder in spec.submodule_search_locations)


def main() -> int:
    if os.environ.get("LMDESK_SELFCHECK_RPC") == "1" and not has_rpc_backend():
        print(_("lmdesk selfcheck: this llama.cpp build has no RPC backend"), file=sys.stderr)
        return 1
    problem = check()
    if problem:
        print(_("lmdesk selfcheck: {problem}", problem=problem), file=sys.stderr)
        return 1
    print(_("lmdesk selfcheck: the default model answers"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
