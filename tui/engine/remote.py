"""RemoteEngine: the Engine protocol over HTTP to any OpenAI-compatible server.

llama-server, Ollama, vLLM, LM Studio or another ``lmdesk serve``: anything that answers
``GET /v1/models`` and streams ``POST /v1/chat/completions`` as server-sent events. Standard
library only (http.client). This and model downloads are the only network use in lmdesk.

Time to first token and tokens/s are measured here, on the client side, so they include the
network; the server's own figures (llama-server's ``timings``) fill in what the client cannot
see (prompt tokens/s, tokens reused from the cache).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from tui.engine.errors import EngineError, InvalidParameter, ModelLoadError
from tui.engine.protocol import (
    ChatMessage,
    EngineEvent,
    ModelInfo,
    SamplingParams,
    ToolChoice,
    ToolSpec,
)
from tui.engine.remote_stream import EXTRAS, Tally, finish, stream_reply
from tui.engine.tool_calls import ToolChoiceError, forced_name, openai_tools
from tui.i18n import _
from tui.offline import OfflineError, allow_network

CHARS_PER_TOKEN = 4


class RemoteError(EngineError):
    """The server could not be reached or answered with an error."""


class RemoteEngine:
    """One model on an OpenAI-compatible server. Thread-safe: ``cancel`` from any thread."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidParameter(
                _("a remote endpoint needs an http:// or https:// URL, got {base_url!r}",
                  base_url=base_url)
            )
        path = parts.path.rstrip("/")
        self._api_path = path if path.endswith("/v1") else path + "/v1"
        self._root_path = self._api_path.removesuffix("/v1")
        self.server = f"{parts.scheme}://{parts.netloc}"
        self.base_url = self.server + self._api_path
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self.api_key = api_key or None
        self.model = model
        self.timeout_s = timeout_s
        self.token_count_is_estimate = False
        """Whether the last ``count_tokens`` answer was estimated (the server cannot count)."""
        self._info: ModelInfo | None = None
        self._send_extras = True
        self._can_tokenize: bool | None = None
        self._ids = itertools.count(1)
        self._use_lock = threading.Lock()  # one generation at a time, like a local model
        self._conn_lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._cancel = threading.Event()

    # --- state ---------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def alive(self) -> bool:
        return self._info is not None

    # --- HTTP ----------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout_s,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "lmdesk"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _describe(self, exc: BaseException) -> str:
        """One line saying what went wrong with the connection."""
        if isinstance(exc, OfflineError):
            return str(exc)
        if isinstance(exc, ConnectionRefusedError):
            return _("connection refused by {server}: is the server running?", server=self.server)
        if isinstance(exc, TimeoutError | socket.timeout):
            return _("timed out after {timeout_s:g} s waiting for {server}",
                     timeout_s=self.timeout_s, server=self.server)
        if isinstance(exc, socket.gaierror):
            return _("cannot find the host {host!r} ({value})",
                     host=self._host, value=exc.strerror or exc)
        if isinstance(exc, ssl.SSLError):
            return _("TLS with {server} failed: {value}",
                     server=self.server, value=exc.reason or exc)
        if isinstance(exc, OSError):
            return _("cannot reach {server}: {value}",
                     server=self.server, value=exc.strerror or exc)
        return _("bad answer from {server}: {exc!r}", server=self.server, exc=exc)

    def _status_error(self, status: int, raw: bytes) -> str:
        message = raw.decode("utf-8", "replace").strip()[:300]
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            error = json.loads(raw)["error"]
            message = error["message"] if isinstance(error, dict) else str(error)
        details = message or _("no details")
        if status in (401, 403):
            return _("{server} answered {status}: check the API key: {details}",
                     server=self.server, status=status, details=details)
        return _("{server} answered {status}: {details}", server=self.server, status=status,
                 details=details)

    def _request_json(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One request, read whole. Raises ``RemoteError`` when the server cannot be reached."""
        conn = self._connection()
        try:
            data = json.dumps(body).encode() if body is not None else None
            with allow_network(self.server):  # the user chose this endpoint
                conn.request(method, path, body=data, headers=self._headers())
                resp = conn.getresponse()
                raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(self._describe(exc)) from None
        finally:
            conn.close()
        if resp.status != 200:
            return resp.status, raw
        try:
            return 200, json.loads(raw)
        except ValueError:
            raise RemoteError(_("{server}{path} did not answer with JSON",
                                server=self.server, path=path)) from None

    # --- life cycle ----------------------------------------------------------------------

    def _model_list(self) -> list[dict[str, Any]]:
        status, body = self._request_json("GET", f"{self._api_path}/models")
        if status != 200:
            raise RemoteError(self._status_error(status, body))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise RemoteError(_("{base_url}/models did not list models", base_url=self.base_url))
        return [item for item in data if isinstance(item, dict) and "id" in item]

    def list_models(self) -> list[str]:
        """The model names the server offers."""
        return [str(item["id"]) for item in self._model_list()]

    def load(self) -> ModelInfo:
        """Ask the server which models it has and pick ours; raise ``ModelLoadError`` if not."""
        start = time.perf_counter()
        try:
            items = self._model_list()
        except RemoteError as exc:
            raise ModelLoadError(str(exc)) from None
        ids = [str(item["id"]) for item in items]
        if self.model is None:
            if not ids:
                raise ModelLoadError(_("the server at {base_url} lists no models",
                                       base_url=self.base_url))
            self.model = ids[0]
        item = next((i for i in items if i["id"] == self.model), None)
        if item is None:
            item = next((i for i in items if str(i["id"]).startswith(f"{self.model}:")), None)
        if item is None and ids:
            raise ModelLoadError(
                _("the server at {base_url} has no model {model!r} (it offers: {join})",
                  base_url=self.base_url, model=self.model, join=', '.join(ids[:12]))
            )
        item = item or {"id": self.model}
        self.model = str(item["id"])
        raw_meta = item.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        n_ctx = _first_int(meta, item, keys=("n_ctx", "max_model_len", "context_length",
                                              "max_context_length"))
        if not n_ctx and item.get("owned_by") == "llamacpp":
            n_ctx = self._llama_server_ctx()
        self._info = ModelInfo(
            path=self.base_url, name=self.model, architecture="remote", n_ctx=n_ctx,
            n_ctx_train=_first_int(meta, item, keys=("n_ctx_train",)) or n_ctx,
            n_layers=0, n_params=_first_int(meta, item, keys=("n_params",)),
            size_bytes=_first_int(meta, item, keys=("size",)), chat_template="(server side)",
            n_threads=0, n_threads_batch=0, n_gpu_layers=0, flash_attn=False,
            gpu_backend=False, load_seconds=time.perf_counter() - start, worker_pid=0,
        )
        return self._info

    def _llama_server_ctx(self) -> int:
        """llama-server tells its context size in /props."""
        with contextlib.suppress(RemoteError, TypeError, AttributeError):
            status, body = self._request_json("GET", f"{self._root_path}/props")
            if status == 200:
                return int(body["default_generation_settings"]["n_ctx"])
        return 0

    def unload(self) -> None:
        """Nothing to free locally; stop any reply and forget the model."""
        self.cancel()
        self._info = None

    # --- generation ----------------------------------------------------------------------

    def _body(
        self, messages: Sequence[ChatMessage], sampling: SamplingParams, raw_prompt: str | None,
        tools: Sequence[ToolSpec] = (), tool_choice: ToolChoice = "auto",
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if self._send_extras:
            body.update({k: getattr(sampling, k) for k in EXTRAS})
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(sampling, name):
                body[name] = getattr(sampling, name)
        if sampling.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
        if sampling.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.top_logprobs
        if sampling.json_schema is not None:
            schema = json.loads(sampling.json_schema)
            body["response_format"] = (
                {"type": "json_object"} if schema in ({}, True) else
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                        "strict": True}})
        if sampling.grammar is not None:  # llama-server's field; a server without it says so
            body["grammar"] = sampling.grammar
        if sampling.ignore_eos:
            body["ignore_eos"] = True
        if sampling.reasoning_budget == 0:  # llama-server and vLLM pass these to the template
            body["chat_template_kwargs"] = {"enable_thinking": False}
        if raw_prompt is not None:
            return f"{self._api_path}/completions", {**body, "prompt": raw_prompt}
        if tools:
            body["tools"] = openai_tools(tools)
            body["tool_choice"] = (tool_choice if tool_choice in ("auto", "none", "required")
                                   else {"type": "function", "function": {"name": tool_choice}})
        chat = [openai_message(m) for m in messages]
        return f"{self._api_path}/chat/completions", {**body, "messages": chat}

    def generate(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingParams,
        *,
        raw_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> Iterator[EngineEvent]:
        """Stream a reply: delta events, then one ``Done`` (also on failure)."""
        if tools:
            try:
                forced_name(tool_choice, tools)
            except ToolChoiceError as exc:
                raise EngineError(str(exc)) from None
        sampling.validate()
        with self._use_lock:
            rid = next(self._ids)
            self._cancel.clear()
            if self._info is None:
                try:
                    self.load()
                except EngineError as exc:
                    yield finish(rid, [], Tally(time.perf_counter()), "error", str(exc))
                    return
            with allow_network(self.server):  # the user chose this endpoint
                yield from stream_reply(self, rid, *self._body(messages, sampling, raw_prompt,
                                                               tools, tool_choice))

    def cancel(self) -> None:
        """Stop the reply in flight: close its connection (the server sees the client leave)."""
        self._cancel.set()
        with self._conn_lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def count_tokens(self, text: str = "", messages: Sequence[ChatMessage] = ()) -> int:
        """The server's count when it can tokenize (llama-server, lmdesk), else an estimate.

        ``token_count_is_estimate`` says which it was.
        """
        joined = "\n".join(m.content for m in messages) if messages else text
        if self._can_tokenize is not False:
            body: dict[str, Any] = {"content": joined}
            if messages:  # lmdesk counts the chat-formatted prompt; llama-server ignores this
                body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
                body["model"] = self.model
            try:
                status, answer = self._request_json("POST", f"{self._root_path}/tokenize", body)
            except RemoteError:
                status, answer = 0, None
            if status == 200 and isinstance(answer, dict):
                self._can_tokenize = True
                if isinstance(answer.get("count"), int):
                    self.token_count_is_estimate = False
                    return int(answer["count"])
                if isinstance(answer.get("tokens"), list):
                    # llama-server counted the text alone; the chat template adds a few per turn
                    self.token_count_is_estimate = bool(messages)
                    return len(answer["tokens"]) + 4 * len(messages)
            elif status in (400, 404, 405, 501):
                self._can_tokenize = False
        self.token_count_is_estimate = True
        chars = len(joined) + 16 * len(messages)
        return math.ceil(chars / CHARS_PER_TOKEN)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """``POST /v1/embeddings``: one L2-normalised vector per text, in order."""
        if not texts:
            return []
        if self.model is None:
            self.load()
        status, body = self._request_json(
            "POST", f"{self._api_path}/embeddings", {"model": self.model, "input": list(texts)})
        if status != 200:
            raise RemoteError(self._status_error(status, body))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise RemoteError(_("{base_url}/embeddings did not return one vector per text",
                                base_url=self.base_url))
        try:
            ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
            vectors = [[float(v) for v in item["embedding"]] for item in ordered]
        except (TypeError, ValueError, KeyError, AttributeError):
            raise RemoteError(_("{base_url}/embeddings sent vectors that are not lists of "
                                "numbers", base_url=self.base_url)) from None
        out = []
        for vector in vectors:
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            out.append([v / norm for v in vector])
        return out

    # --- for tui.engine.remote_stream ----------------------------------------------------

    def _open(self) -> http.client.HTTPConnection:
        conn = self._connection()
        with self._conn_lock:
            self._conn = conn
        return conn

    def _close(self, conn: http.client.HTTPConnection) -> None:
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
        conn.close()


def openai_message(m: ChatMessage) -> dict[str, Any]:
    """A message as OpenAI's chat API takes it, with its tool calls or the call it answers."""
    item: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        item["content"] = m.content or None
        item["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.tool_call_id is not None:
        item["tool_call_id"] = m.tool_call_id
    if m.role == "tool" and m.name:
        item["name"] = m.name
    return item


def _first_int(*sources: dict[str, Any], keys: tuple[str, ...]) -> int:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return 0
