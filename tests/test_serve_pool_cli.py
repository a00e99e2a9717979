"""The engine pool (names, loading on first use, room for models) and the serve command."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.serve_helpers import RecordingEngine
from tui.engine.base import Engine
from tui.engine.errors import ModelLoadError
from tui.engine.protocol import LoadParams
from tui.serve import EnginePool, QueueFull, UnknownModel
from tui.serve.cli import add_serve_parser


def _factory(made: list[RecordingEngine]):  # type: ignore[no-untyped-def]
    def make(params: LoadParams) -> Engine:
        engine = RecordingEngine("ok", name=Path(params.model_path).stem)
        made.append(engine)
        return engine

    return make


def test_models_load_on_first_use_and_the_least_recent_makes_room() -> None:
    made: list[RecordingEngine] = []
    pool = EnginePool(max_loaded=1, engine_factory=_factory(made))
    pool.add_model("alpha", LoadParams(model_path="/m/alpha.gguf"))
    pool.add_model("beta", LoadParams(model_path="/m/beta.gguf"))
    assert pool.default == "alpha"
    assert not any(m.loaded for m in pool.models())
    with pool.lease(None) as lease:
        assert lease.name == "alpha" and lease.engine.alive
    with pool.lease("BETA") as lease:  # names are case-insensitive
        assert lease.name == "beta"
    assert [m.name for m in pool.models() if m.loaded] == ["beta"]
    assert made[0].unloads == 1
    with pool.lease("al") as lease:  # a unique prefix
        assert lease.name == "alpha"
    pool.close()
    assert not any(m.loaded for m in pool.models())


def test_registered_engines_are_never_unloaded_by_the_pool() -> None:
    shared = RecordingEngine("hi")
    shared.load()
    pool = EnginePool(max_loaded=1, engine_factory=_factory([]))
    pool.register("app-model", shared, default=True)
    pool.add_model("other", LoadParams(model_path="/m/other.gguf"))
    with pool.lease("other"):
        pass
    pool.close()
    assert shared.unloads == 0 and shared.alive
    pool.unregister("app-model")
    assert [m.name for m in pool.models()] == ["other"]


def test_unknown_names_and_a_full_queue() -> None:
    pool = EnginePool(queue_depth=0)
    pool.register("only", RecordingEngine("x"))
    with pytest.raises(UnknownModel, match="available: only"):
        pool.resolve("gpt-4")
    with pool.lease("only"), pytest.raises(QueueFull, match="busy"), pool.lease("only"):
        pass


def test_a_failed_load_is_reported_and_retried_next_time(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    pool = EnginePool()
    pool.add_model("bad", LoadParams(model_path=str(bad)))
    for _ in range(2):
        with pytest.raises(ModelLoadError), pool.lease("bad"):
            pass
    assert not pool.models()[0].loaded


def test_serve_parser_defaults_are_safe() -> None:
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert args.host == "127.0.0.1" and not args.expose and args.api_key is None


def _serve(*extra: str) -> subprocess.Popen[str]:
    code = (
        "import argparse, sys\n"
        "from tui.config import Settings, resolve_paths\n"
        "from tui.serve.cli import add_serve_parser, cmd_serve\n"
        "p = argparse.ArgumentParser(); add_serve_parser(p.add_subparsers(dest='command'))\n"
        "args = p.parse_args(['serve', *sys.argv[1:]])\n"
        "sys.exit(cmd_serve(args, Settings(), resolve_paths()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LMDESK_API_KEY"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )


def test_serve_command_starts_lists_models_and_stops_on_sigterm(smollm: Path) -> None:
    proc = _serve("--port", "0", "--model", str(smollm), "--quiet")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("lmdesk serve: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        banner = [proc.stdout.readline() for _ in range(3)]
        assert "models" in banner[0] and "(default)" in banner[0]
        assert "none" in banner[1]
        with urllib.request.urlopen(f"{url}/models", timeout=10) as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        assert smollm.stem in ids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_command_refuses_a_public_address_without_expose_and_key() -> None:
    proc = _serve("--host", "0.0.0.0", "--port", "0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--expose" in err
    proc = _serve("--host", "0.0.0.0", "--port", "0", "--expose")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "API key" in err
