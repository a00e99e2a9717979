"""The request handler: routing, auth, limits, and the generation endpoints (plain and SSE).

Every generation endpoint (OpenAI's chat completions, completions and Responses, Anthropic's
Messages) runs the same loop: parse the body into a ``GenerationRequest``, queue for the model
(``EnginePool.lease``, first come first served, the app's generation lock when it shares its
model), run each of the request's generations on the engine, and shape what streams into the
dialect's ``Reply``. The API's messages are the client's own conversation, so nothing is added
to them (no memory, no persona) and a prompt that does not fit the window is a 400, never
trimmed: that is why the session layer's prompt building is not used here.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from tui.engine.base import Embedder, Engine
from tui.engine.errors import EngineError
from tui.engine.protocol import ChatMessage, Done, EngineEvent, ReasoningDelta, TextDelta
from tui.i18n import _, language_from_accept, speaking
from tui.serve import (
    anthropic_api,
    embeddings,
    metrics,
    openai_api,
    responses_api,
    responses_reply,
)
from tui.serve.jsonhttp import JsonHandler
from tui.serve.pool import ClientGone, Lease, QueueFull, UnknownModel
from tui.serve.schema import (
    ApiError,
    Generation,
    GenerationRequest,
    Reply,
    bad,
    find_lone_surrogate,
)
from tui.serve.server import is_loopback
from tui.serve.tool_calls import CallNormalizer
from tui.serve.vocab import VocabError, vocabulary
from tui.serve.watch import Canceller, ClientWatch

log = logging.getLogger("lmdesk.serve")

Parser = Callable[..., GenerationRequest]
DIALECTS: dict[str, tuple[Parser, Callable[[GenerationRequest, str], Reply]]] = {
    "chat": (lambda body, **kw: openai_api.parse("chat", body, **kw), openai_api.OpenAIReply),
    "completion": (lambda body, **kw: openai_api.parse("completion", body, **kw),
                   openai_api.OpenAIReply),
    "messages": (anthropic_api.parse, anthropic_api.AnthropicReply),
    "responses": (responses_api.parse, responses_reply.ResponsesReply),
}
PUBLIC = ("/health",)
"""Routes answered without the API key (a load balancer's probe)."""


class ApiHandler(JsonHandler):
    """The OpenAI-compatible routes (and Anthropic's Messages)."""

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
        self._request_headers = {}
        self.error_shape = ApiError.body  # type: ignore[assignment]
        self._body_pending = self._has_body()
        if self._body_pending and self._body_length() is None:
            self.close_connection = True  # a chunked body cannot be skipped: the answer says so
        route = unquote(urlsplit(self.path).path).rstrip("/")
        route = route.removeprefix("/v1") or "/"
        # errors in the language the client asks for (Accept-Language: es), this request only
        with speaking(language_from_accept(self.headers.get("Accept-Language"))):
            self._route_and_answer(route, start)

    def _route_and_answer(self, route: str, start: float) -> None:
        try:
            self._check_origin_and_host()
            if self.command == "OPTIONS":
                self._preflight()
                return
            action = self._route(route)
            if route not in PUBLIC:
                self._check_auth()
            action()
        except ApiError as exc:
            self._answer_error(exc)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # a bug of ours: answer 500 (never echoing the request) and go on
            log.exception("internal error answering %s %s", self.command, self.path)
            self._answer_error(ApiError(
                500, _("internal error in lmdesk serve (the server log has the details)"),
                type="server_error"))
        finally:
            if self._body_pending and not self.close_connection:
                self._drain()  # a body nobody read (a GET's) is not the next request
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
            ("GET", "/metrics"): self._metrics,
            ("GET", "/slots"): self._slots,
            ("POST", "/chat/completions"): lambda: self._generate("chat", route),
            ("POST", "/completions"): lambda: self._generate("completion", route),
            ("POST", "/responses"): lambda: self._generate("responses", route),
            ("POST", "/messages"): lambda: self._generate("messages", route),
            ("POST", "/messages/count_tokens"): self._count_message_tokens,
            ("POST", "/embeddings"): lambda: self._embeddings(route),
            ("POST", "/tokenize"): self._tokenize,
        }
        if route.startswith("/messages"):
            self.error_shape = anthropic_api.error_shape  # type: ignore[assignment]
        key = (self.command, route)
        if key in routes:
            return routes[key]
        if self.command == "GET" and route.startswith("/models/"):
            return lambda: self._model(route.removeprefix("/models/"))
        if any(path == route for _, path in routes):
            raise ApiError(405, _("{command} is not allowed on {route}",
                                  command=self.command, route=route), code="bad_method")
        raise ApiError(404, _("no such endpoint: {command} {path}",
                              command=self.command, path=self.path), code="not_found")

    def _check_origin_and_host(self) -> None:
        origin = self.headers.get("Origin")
        if origin and self._allowed_origin() is None:
            raise ApiError(
                403,
                _("requests from web pages are refused (origin {origin}); allow this origin "
                  "with --cors ORIGIN", origin=origin),
                code="origin_not_allowed",
            )
        if not self.api.exposed:
            host = self.headers.get("Host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host and not is_loopback(name):
                raise ApiError(
                    403, _("Host {host!r} refused: this server answers on loopback only",
                           host=host),
                    code="host_not_allowed",
                )

    def _check_auth(self) -> None:
        key = self.api.api_key
        if not key:
            return
        scheme, _space, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            token = self.headers.get("x-api-key", "")  # Anthropic's SDK sends the key so
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(
                401,
                _("missing or wrong API key: send the header 'Authorization: Bearer KEY' (or "
                  "'x-api-key: KEY')"),
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _preflight(self) -> None:
        self._start(204, {
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, x-api-key, "
                                            "anthropic-version",
            "Access-Control-Max-Age": "600",
            "Content-Length": "0",
        })

    def _body(self) -> dict[str, Any]:
        body = self._read_json()
        where = find_lone_surrogate(body)
        if where is not None:  # never echo the text: it may be a whole prompt
            raise bad(_("{where} is not valid Unicode text (it holds a lone UTF-16 "
                        "surrogate); send UTF-8 text", where=where), where, "invalid_text")
        return body

    def _ignoring(self, route: str, names: tuple[str, ...]) -> None:
        if names:
            self._request_headers = {"x-lmdesk-ignored": ", ".join(names)}
            self.api.note_ignored(route, names)

    # --- small endpoints -----------------------------------------------------------------

    def _health(self) -> None:
        """llama-server's probe: 200 ``ok`` once the default model can answer, 503
        ``loading`` while it loads."""
        default = self.api.pool.default
        entry = next((m for m in self.api.pool.models() if m.name == default), None)
        if entry is not None and entry.loading:
            self._answer(503, {"status": "loading", "error": {
                "message": f"loading {entry.name}", "type": "unavailable_error",
                "param": None, "code": 503}}, {"Retry-After": "1"})
            return
        self._answer(200, {"status": "ok"})

    def _metrics(self) -> None:
        text = metrics.prometheus(self.api.stats, self.api.pool.models())
        self._answer_bytes(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _slots(self) -> None:
        self._answer(200, metrics.slots(self.api.stats, self.api.pool.models()))

    def _model_object(self, name: str) -> dict[str, Any]:
        entry = next(m for m in self.api.pool.models() if m.name == name)
        return {
            "id": entry.name, "object": "model", "created": 0, "owned_by": "lmdesk",
            "meta": {"n_ctx": entry.n_ctx, "loaded": entry.loaded,
                     "embedding": self.api.pool.is_embedding_model(entry.name)},
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
        body = self._body()
        content = body.get("content", "")
        if not isinstance(content, str):
            raise bad(_("content must be a string"), "content")
        messages: tuple[ChatMessage, ...] = ()
        if body.get("messages") is not None:
            messages = openai_api.parse(
                "chat", {"messages": body["messages"]}, default_max_tokens=1, max_tokens_limit=1
            ).generations[0].messages
        model = body.get("model")
        with self._lease(model if isinstance(model, str) else None, None) as lease:
            count = lease.engine.count_tokens(content, messages)
        self._answer(200, {"count": count, "model": lease.name})

    def _count_message_tokens(self) -> None:
        """Anthropic's ``/v1/messages/count_tokens``: the prompt's tokens, nothing generated."""
        body = self._body()
        body.setdefault("max_tokens", 1)
        req = anthropic_api.parse(body, default_max_tokens=1, max_tokens_limit=1)
        with self._lease(req.model, None) as lease:
            count = lease.engine.count_tokens("", req.generations[0].messages)
        self._answer(200, {"input_tokens": count})

    def _embeddings(self, route: str) -> None:
        req = embeddings.parse(self._body())
        self._ignoring(route, req.ignored)
        # clients send their favourite model's name ("text-embedding-3-small"): a name this
        # server does not know means its embedding model, else the default one
        name = req.model
        try:
            if name is not None:
                self.api.pool.resolve(name)
        except UnknownModel:
            name = None
        if name is None:
            name = self.api.pool.embedding_model()
        with self._lease(name, None) as lease:
            engine = lease.engine
            if not isinstance(engine, Embedder):
                raise ApiError(400, _("model {name!r} cannot make embeddings here (its engine "
                                      "has no embedding support)", name=lease.name), param="model",
                               code="embeddings_unsupported")
            texts = list(req.texts or ())
            if req.token_arrays is not None:
                texts = self._decode_tokens(engine, req.token_arrays)
            try:
                vectors = engine.embed(texts)
                tokens = sum(engine.count_tokens(t) for t in texts)
            except EngineError as exc:
                raise ApiError(500, str(exc), type="server_error", code="embedding_failed"
                               ) from None
        if vectors:
            embeddings.check_dimensions(req, len(vectors[0]))
        self._answer(200, embeddings.answer(req, lease.name, vectors, tokens))

    @staticmethod
    def _decode_tokens(engine: Engine, arrays: tuple[tuple[int, ...], ...]) -> list[str]:
        path = engine.info.path if engine.info is not None else ""
        try:
            vocab = vocabulary(path)
            return [vocab.decode(list(ids)) for ids in arrays]
        except VocabError as exc:
            raise bad(_("token arrays cannot be read here: {exc}; send text", exc=exc),
                      "input") from None

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

    def _generate(self, kind: str, route: str) -> None:
        parse, make_reply = DIALECTS[kind]
        body = self._body()
        limits = self.api.limits
        req = parse(body, default_max_tokens=limits.default_max_tokens,
                    max_tokens_limit=limits.max_tokens_limit)
        self._ignoring(route, req.ignored)
        stats = self.api.stats
        stats.started()
        try:
            with ClientWatch(self.connection) as watch:
                try:
                    with self._lease(req.model, watch) as lease:
                        self._run(lease, req, make_reply(req, lease.name), watch)
                except ClientGone:
                    self.close_connection = True
                finally:
                    if watch.gone.is_set():
                        self.close_connection = True
        finally:
            stats.ended()

    def _run(self, lease: Lease, req: GenerationRequest, reply: Reply, watch: ClientWatch
             ) -> None:
        canceller = Canceller(lease.engine)
        watch.on_gone = canceller
        self.api.track(canceller, True)  # a server that stops ends its replies early
        dones: list[Done] = []
        try:
            for index, gen in enumerate(req.generations):
                calls = CallNormalizer(req.parallel_tool_calls)
                events = calls.events(_guarded(_generation(lease, gen), lease.engine, watch,
                                               canceller))
                if req.stream:
                    done = self._stream(events, reply, index, req, watch)
                else:
                    done = _last(events)
                dones.append(done)
                self.api.stats.reply(lease.name, done, watch.gone.is_set())
                if watch.gone.is_set() or done.stats.stop_reason in ("error", "cancelled"):
                    break
            if watch.gone.is_set():
                return
            if req.stream:
                with contextlib.suppress(OSError):
                    self._ensure_open(req, reply)
                    self._send_frames(reply.closing(dones))
                    self._write_chunk(b"")
                return
            _raise_failure(dones[-1])
            self._answer(200, reply.answer(dones), _clamp_header(req))
        finally:
            watch.on_gone = None
            self.api.track(canceller, False)

    def _stream(self, events: Iterator[EngineEvent], reply: Reply, index: int,
                req: GenerationRequest, watch: ClientWatch) -> Done:
        done: Done | None = None
        for event in events:
            if isinstance(event, Done):
                done = event
                continue
            if watch.gone.is_set():
                continue
            try:
                self._ensure_open(req, reply)
                if isinstance(event, TextDelta):
                    self._send_frames(reply.text(index, event.text))
                elif isinstance(event, ReasoningDelta):
                    self._send_frames(reply.reasoning(index, event.text))
                else:
                    self._send_frames(reply.tool_call(index, event))
            except OSError:
                watch.mark_gone()
        assert done is not None, "an engine ended a reply without Done"
        if watch.gone.is_set():
            return done
        with contextlib.suppress(OSError):
            if not self._headers_done:
                _raise_failure(done)  # nothing streamed yet: a plain error status is clearer
            self._ensure_open(req, reply)
            self._send_frames(reply.choice_done(index, done))
        return done

    def _ensure_open(self, req: GenerationRequest, reply: Reply) -> None:
        """The headers of the event stream and the dialect's opening events, once."""
        if self._headers_done:
            return
        self._open_events(_clamp_header(req))
        self._send_frames(reply.opening())


def _clamp_header(req: GenerationRequest) -> dict[str, str]:
    return {"X-Lmdesk-Max-Tokens-Clamped": "1"} if req.max_tokens_clamped else {}


def _generation(lease: Lease, gen: Generation) -> Iterator[EngineEvent]:
    """The engine's events for one generation. An engine that cannot call tools raises
    ``EngineError`` before its first event: with ``tool_choice`` none the reply goes on without
    tools (none would be called), else the request is a 400 saying so."""
    engine = lease.engine
    if not gen.tools:
        yield from engine.generate(gen.messages, gen.sampling, raw_prompt=gen.raw_prompt)
        return
    events = engine.generate(gen.messages, gen.sampling, raw_prompt=gen.raw_prompt,
                             tools=gen.tools, tool_choice=gen.tool_choice)
    try:
        first = next(events)
    except StopIteration:
        return
    except EngineError as exc:
        if gen.tool_choice == "none":
            yield from engine.generate(gen.messages, gen.sampling, raw_prompt=gen.raw_prompt)
            return
        raise ApiError(400, _("model {name!r} cannot call tools here ({exc}); send the request "
                              "without tools, or use a model whose chat template has tool "
                              "support", name=lease.name, exc=exc),
                       param="tools", code="tools_unsupported") from None
    yield first
    yield from events


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
        raise EngineError(_("the engine ended a reply without Done"))
    return done


def _raise_failure(done: Done) -> None:
    """A failed reply, not streamed (or nothing streamed yet): answer with an error status."""
    if done.stats.stop_reason != "error":
        return
    message = done.error or "generation failed"
    if "context window" in message:
        raise ApiError(400, message, param="messages", code="context_length_exceeded")
    raise ApiError(500, message, type="server_error", code="generation_failed")
