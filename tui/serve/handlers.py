"""The request handler: routing, auth, limits, and the generation endpoints (plain and SSE)."""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from tui.engine.base import Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, Done, EngineEvent, TextDelta
from tui.serve import schema
from tui.serve.jsonhttp import JsonHandler
from tui.serve.pool import ClientGone, Lease, QueueFull, UnknownModel
from tui.serve.schema import ApiError, GenerationRequest, bad
from tui.serve.server import is_loopback
from tui.serve.watch import Canceller, ClientWatch

log = logging.getLogger("lmdesk.serve")


class ApiHandler(JsonHandler):
    """The OpenAI-compatible routes."""

    # --- plumbing ------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        start = time.perf_counter()
        self._status = 0
        self._headers_done = False
        self._body_pending = self.command in ("POST", "PUT")
        route = unquote(urlsplit(self.path).path).rstrip("/")
        route = route.removeprefix("/v1") or "/"
        try:
            self._check_origin_and_host()
            if self.command == "OPTIONS":
                self._preflight()
                return
            action = self._route(route)
            if route != "/health":
                self._check_auth()
            action()
        except ApiError as exc:
            self._answer_error(exc)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug of ours: answer 500 and keep serving
            log.exception("internal error answering %s %s", self.command, self.path)
            self._answer_error(ApiError(500, f"internal error: {exc!r}", type="server_error"))
        finally:
            if self._status:
                self.api.stats.answered(self._status)
            if self.api.log is not None:
                ms = (time.perf_counter() - start) * 1000
                self.api.log(
                    f"{self.client_address[0]} {self.command} {self.path} "
                    f"{self._status or '-'} {ms:.0f} ms"
                )

    def _route(self, route: str) -> Callable[[], None]:
        routes: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "/models"): self._models,
            ("GET", "/health"): self._health,
            ("POST", "/chat/completions"): lambda: self._generate("chat"),
            ("POST", "/completions"): lambda: self._generate("completion"),
            ("POST", "/tokenize"): self._tokenize,
        }
        key = (self.command, route)
        if key in routes:
            return routes[key]
        if self.command == "GET" and route.startswith("/models/"):
            return lambda: self._model(route.removeprefix("/models/"))
        if any(path == route for _, path in routes):
            raise ApiError(405, f"{self.command} is not allowed on {route}", code="bad_method")
        raise ApiError(404, f"no such endpoint: {self.command} {self.path}", code="not_found")

    def _check_origin_and_host(self) -> None:
        origin = self.headers.get("Origin")
        allowed = self.api.limits.cors_origins
        if origin and origin not in allowed and "*" not in allowed:
            raise ApiError(
                403,
                f"requests from web pages are refused (origin {origin}); "
                "allow this origin with --cors ORIGIN",
                code="origin_not_allowed",
            )
        if not self.api.exposed:
            host = self.headers.get("Host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host and not is_loopback(name):
                raise ApiError(
                    403, f"Host {host!r} refused: this server answers on loopback only",
                    code="host_not_allowed",
                )

    def _check_auth(self) -> None:
        key = self.api.api_key
        if not key:
            return
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _preflight(self) -> None:
        self._start(204, {
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Content-Length": "0",
        })

    # --- small endpoints -----------------------------------------------------------------

    def _health(self) -> None:
        self._answer(200, {"status": "ok"})

    def _model_object(self, name: str) -> dict[str, Any]:
        entry = next(m for m in self.api.pool.models() if m.name == name)
        return {
            "id": entry.name, "object": "model", "created": 0, "owned_by": "lmdesk",
            "meta": {"n_ctx": entry.n_ctx, "loaded": entry.loaded},
        }

    def _models(self) -> None:
        data = [self._model_object(m.name) for m in self.api.pool.models()]
        self._answer(200, {"object": "list", "data": data})

    def _model(self, name: str) -> None:
        try:
            self._answer(200, self._model_object(self.api.pool.resolve(name)))
        except UnknownModel as exc:
            raise ApiError(404, str(exc), param="model", code="model_not_found") from None

    def _tokenize(self) -> None:
        body = self._read_json()
        unknown = sorted(set(body) - {"content", "messages", "model", "add_special"})
        if unknown:
            raise bad(f"unknown field {unknown[0]!r}", unknown[0], "unknown_field")
        content = body.get("content", "")
        if not isinstance(content, str):
            raise bad("content must be a string", "content")
        messages: tuple[ChatMessage, ...] = ()
        if body.get("messages") is not None:
            messages = schema.parse_generation(
                "chat", {"messages": body["messages"]}, default_max_tokens=1, max_tokens_limit=1
            ).messages
        model = body.get("model")
        with self._lease(model if isinstance(model, str) else None, None) as lease:
            count = lease.engine.count_tokens(content, messages)
        self._answer(200, {"count": count, "model": lease.name})

    # --- generation ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _lease(self, model: str | None, watch: ClientWatch | None) -> Iterator[Lease]:
        abandoned = watch.gone.is_set if watch is not None else (lambda: False)
        try:
            with self.api.pool.lease(model, abandoned=abandoned) as lease:
                yield lease
        except QueueFull as exc:
            raise ApiError(
                429, str(exc), type="rate_limit_error", code="queue_full",
                headers={"Retry-After": "1"},
            ) from None
        except UnknownModel as exc:
            raise ApiError(404, str(exc), param="model", code="model_not_found") from None
        except EngineError as exc:
            raise ApiError(500, str(exc), type="server_error", code="model_failed") from None

    def _generate(self, kind: str) -> None:
        body = self._read_json()
        limits = self.api.limits
        req = schema.parse_generation(
            kind, body, default_max_tokens=limits.default_max_tokens,
            max_tokens_limit=limits.max_tokens_limit,
        )
        stats = self.api.stats
        stats.started()
        done: Done | None = None
        name = req.model or ""
        with ClientWatch(self.connection) as watch:
            try:
                with self._lease(req.model, watch) as lease:
                    name = lease.name
                    done = self._run(lease, req, watch)
            except ClientGone:
                self.close_connection = True
            finally:
                stats.finished(name, done, watch.gone.is_set())
                if watch.gone.is_set():
                    self.close_connection = True

    def _run(self, lease: Lease, req: GenerationRequest, watch: ClientWatch) -> Done:
        canceller = Canceller(lease.engine)
        watch.on_gone = canceller
        self.api.track(canceller, True)  # a server that stops ends its replies early
        try:
            events = lease.engine.generate(
                req.messages, req.sampling, raw_prompt=req.raw_prompt
            )
            if req.stream:
                return self._stream(_guarded(events, lease.engine, watch, canceller), lease.name,
                                    req, watch)
            done = _last(_guarded(events, lease.engine, watch, canceller))
            if not watch.gone.is_set():
                _raise_failure(done)
                answer = schema.full_answer(req.kind, schema.new_id(req.kind), lease.name, done)
                headers = {"X-Lmdesk-Max-Tokens-Clamped": "1"} if req.max_tokens_clamped else {}
                self._answer(200, answer, headers)
            return done
        finally:
            watch.on_gone = None
            self.api.track(canceller, False)

    def _stream(
        self, events: Iterator[EngineEvent], model: str, req: GenerationRequest, watch: ClientWatch
    ) -> Done:
        rid = schema.new_id(req.kind)
        done: Done | None = None
        for event in events:
            if isinstance(event, Done):
                done = event
                continue
            if watch.gone.is_set() or not isinstance(event, TextDelta):
                continue
            try:
                if not self._headers_done:
                    self._open_stream(req, rid, model)
                self._event(schema.chunk(req.kind, rid, model, event.text))
            except OSError:
                watch.mark_gone()
        assert done is not None, "an engine ended a reply without Done"
        if watch.gone.is_set():
            return done
        with contextlib.suppress(OSError):
            if not self._headers_done:
                _raise_failure(done)  # nothing streamed yet: a plain error status is clearer
                self._open_stream(req, rid, model)
            if done.error:
                error = schema.error_body(done.error, "server_error", None, "generation_failed")
                self._event(error)
            self._event(schema.chunk(req.kind, rid, model, None, done=done))
            if req.include_usage:
                self._event(schema.usage_chunk(req.kind, rid, model, done))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        return done

    def _open_stream(self, req: GenerationRequest, rid: str, model: str) -> None:
        """The headers of an event stream, and for a chat the opening event with the role."""
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            "X-Accel-Buffering": "no",
        }
        if req.max_tokens_clamped:
            headers["X-Lmdesk-Max-Tokens-Clamped"] = "1"
        self._start(200, headers)
        if req.kind == "chat":
            self._event(schema.chunk(req.kind, rid, model, None, role=True))


def _guarded(
    events: Iterator[EngineEvent], engine: Engine, watch: ClientWatch, canceller: Canceller
) -> Iterator[EngineEvent]:
    """The engine's events, run to the end (the engine is free only after its Done), with the
    reply cancelled as soon as the client is gone."""
    for event in events:
        if isinstance(event, Done):
            canceller.active(False)
        else:
            canceller.active(True)
            if watch.gone.is_set() or canceller.wanted:
                engine.cancel()  # between two events of ours: the engine is busy with us
        yield event


def _last(events: Iterator[EngineEvent]) -> Done:
    done: Done | None = None
    for event in events:
        if isinstance(event, Done):
            done = event
    if done is None:
        raise EngineError("the engine ended a reply without Done")
    return done


def _raise_failure(done: Done) -> None:
    """A failed reply, not streamed (or nothing streamed yet): answer with an error status."""
    if done.stats.stop_reason != "error":
        return
    message = done.error or "generation failed"
    if "context window" in message:
        raise ApiError(400, message, param="messages", code="context_length_exceeded")
    raise ApiError(500, message, type="server_error", code="generation_failed")
