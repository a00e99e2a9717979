"""``lmdesk serve``: its options and the command itself.

Wiring in ``tui/cli.py``: ``add_serve_parser(sub)`` in ``build_parser``, "serve" in
``COMMANDS``, and ``return cmd_serve(args, settings, paths)`` in ``main``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.config import Paths, Settings
from tui.engine.errors import EngineError
from tui.engine.protocol import LoadParams
from tui.i18n import _
from tui.models.registry import (
    ModelNotFound,
    ModelRef,
    folder_models,
    packaged_models,
    resolve_model,
)
from tui.serve.pool import EnginePool
from tui.serve.server import DEFAULT_PORT, ApiServer, ServerLimits, UnsafeBind
from tui.session.params import with_core_share

API_KEY_ENV = "LMDESK_API_KEY"


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``sub`` (an argparse sub-parsers object)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help=_("an OpenAI-compatible API for your local models"),
        description=_("Serve the local models over an OpenAI-compatible HTTP API: POST "
                      "/v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings, "
                      "Anthropic's /v1/messages; GET /v1/models, /health, /metrics, /slots."),
    )
    p.add_argument("--host", default="127.0.0.1", help=_("address to listen on (127.0.0.1)"))
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=_("port ({DEFAULT_PORT})",
                                                                    DEFAULT_PORT=DEFAULT_PORT))
    p.add_argument(
        "--api-key",
        help=_("require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else no key; "
               "prefer the variable: a key on the command line shows in the process list)",
               API_KEY_ENV=API_KEY_ENV),
    )
    p.add_argument(
        "--expose", action="store_true",
        help=_("allow a --host other than loopback (needs an API key)"),
    )
    p.add_argument("-m", "--model", help=_("the default model: a name or a GGUF path"))
    p.add_argument("--n-ctx", type=int, help=_("context window of loaded models"))
    p.add_argument("--threads", type=int, help=_("generation threads (default: physical cores)"))
    p.add_argument("--gpu-layers", type=int, help=_("layers on the GPU (-1: all)"))
    p.add_argument("--queue", type=int, default=8, help=_("requests that may wait per model (8)"))
    p.add_argument("--max-loaded", type=int, default=2, help=_("models loaded at once (2)"))
    p.add_argument("--max-connections", type=int, default=64,
                   help=_("open connections at once; more are answered 503 (64)"))
    p.add_argument(
        "--max-tokens-limit", type=int, default=4096, help=_("clamp max_tokens to this (4096)")
    )
    p.add_argument(
        "--cors", action="append", default=[], metavar="ORIGIN",
        help=_("a browser origin allowed to call the API (repeatable; '*' for any)"),
    )
    p.add_argument("--preload", action="store_true", help=_("load the default model first"))
    p.add_argument("-q", "--quiet", action="store_true", help=_("do not log each request"))
    return p


def _load_params(args: argparse.Namespace, settings: Settings, ref: ModelRef,
                 lora_path: str | None = None) -> LoadParams:
    def pick(arg: str, setting: str) -> Any:
        value = getattr(args, arg, None)
        return value if value is not None else getattr(settings, setting)

    return LoadParams(
        model_path=str(ref.path),
        n_ctx=pick("n_ctx", "n_ctx"),
        n_threads=pick("threads", "n_threads"),
        n_gpu_layers=pick("gpu_layers", "n_gpu_layers"),
        lora_path=lora_path,
    )


def build_pool(args: argparse.Namespace, settings: Settings,
               paths: Paths | None = None) -> EnginePool:
    """The default model first, then every installed one and (with ``paths``) every model
    profile (base model + its LoRA adapter, e.g. from `lmdesk tune`), each loaded on first
    use. A profile's nickname names it, as for `lmdesk ask --model`."""
    from tui.models.profiles import stored_profiles

    pool = EnginePool(queue_depth=args.queue, max_loaded=args.max_loaded)
    adapters: dict[str, str | None] = {}
    profiles = []
    for p in stored_profiles(paths.data_dir) if paths is not None else []:
        profiles.append(ModelRef(p.nickname, Path(p.model_path), "profile"))
        adapters[p.nickname.lower()] = p.lora_path
    wanted = args.model or settings.model
    default = next((p for p in profiles if wanted and p.name.lower() == wanted.strip().lower()),
                   None) or resolve_model(wanted, settings.model_dirs)
    seen: set[str] = set()
    for ref in [default, *packaged_models(), *folder_models(settings.model_dirs), *profiles]:
        if ref.name.lower() not in seen:
            seen.add(ref.name.lower())
            lora = adapters.get(ref.name.lower()) if ref.source == "profile" else None
            params = _load_params(args, settings, ref, lora)
            if paths is not None:  # split the cores with the app's models generating too
                params = with_core_share(params, paths.cache_dir)
            pool.add_model(ref.name, params, default=ref is default)
    return pool


def banner(server: ApiServer) -> list[str]:
    models = [_("{name} (default)", name=m.name) if m.name == server.pool.default else m.name
              for m in server.pool.models()]
    lines = [
        f"lmdesk serve: {server.url}",
        _("  models   {names}", names=", ".join(models)),
        _("  key      required (Authorization: Bearer ...)") if server.api_key
        else _("  key      none"),
    ]
    if server.exposed:
        lines += [
            _("  WARNING  listening on {host}: other machines that can reach this one and know "
              "the key can use your models.", host=server.host),
            _("           Traffic is plain HTTP; use a TLS proxy or an SSH tunnel on networks "
              "you do not trust."),
        ]
    else:
        lines.append(_("  access   this machine only (--host ADDR --expose --api-key KEY to "
                       "share)"))
    return lines


def cmd_serve(args: argparse.Namespace, settings: Settings, paths: Paths) -> int:
    def err(message: str) -> None:
        print(_("lmdesk: error: {message}", message=message), file=sys.stderr)

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if (args.queue < 0 or args.max_loaded < 1 or args.max_tokens_limit < 1
            or args.max_connections < 1):
        err("--queue must be >= 0; --max-loaded, --max-tokens-limit and --max-connections "
            ">= 1")
        return 2
    try:
        pool = build_pool(args, settings, paths)
    except (ModelNotFound, EngineError) as exc:
        err(str(exc))
        return 1
    limits = ServerLimits(
        max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=min(settings.max_tokens, args.max_tokens_limit),
        cors_origins=tuple(args.cors),
        max_connections=args.max_connections,
    )
    log: Callable[[str], None] | None = None
    if not args.quiet:
        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    try:
        server = ApiServer(
            pool, args.host, args.port, api_key, expose=args.expose, limits=limits, log=log
        )
    except UnsafeBind as exc:
        err(str(exc))
        return 2
    try:
        try:
            server.start()
        except OSError as exc:
            err(_("cannot listen on {host}:{port}: {reason}", host=args.host, port=args.port,
                  reason=exc.strerror or exc))
            return 1
        print("\n".join(banner(server)), flush=True)
        if args.preload:  # listening already: /health answers "loading" meanwhile
            with pool.lease(None) as lease:
                print(_("loaded {name}", name=lease.name), file=sys.stderr, flush=True)
        return _wait(server)
    except EngineError as exc:
        err(str(exc))
        return 1
    finally:
        server.stop()
        pool.close()


def _wait(server: ApiServer) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while server.running and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(_("lmdesk serve: stopped"), file=sys.stderr, flush=True)
    return 0
