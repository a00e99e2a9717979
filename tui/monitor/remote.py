"""What a remote model server spends, in its own figures: llama-server's ``/slots`` and
``/metrics``, Ollama's ``/api/ps``, vLLM's ``/metrics`` (and ``lmdesk serve``, which offers
llama-server's). Asked only while the monitor shows them; "not offered" when a server has
none of these. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tui.i18n import _, format_number

Rows = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RemoteFigures:
    server: str
    """"llama-server", "ollama", "vllm" or "" when nothing was offered."""
    rows: Rows = ()
    """(label, value) lines for the monitor."""
    error: str = ""

    @property
    def offered(self) -> bool:
        return bool(self.rows)


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Metric name -> value (the sum over label sets), from Prometheus' text format."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if found is None:
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            out[found.group(1)] = out.get(found.group(1), 0.0) + value
    return out


def _gib(n: float) -> str:
    return f"{format_number(n / (1 << 30), 1)} GiB"


def llama_server_rows(slots: object, metrics: dict[str, float]) -> Rows:
    rows: list[tuple[str, str]] = []
    if isinstance(slots, list):
        busy = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))
        rows.append(("slots", f"{busy}/{len(slots)} busy"))
    rate = metrics.get("llamacpp:predicted_tokens_seconds")
    if rate:
        rows.append(("srv gen", f"{rate:.1f} tok/s"))
    prompt = metrics.get("llamacpp:prompt_tokens_seconds")
    if prompt:
        rows.append(("srv pp", f"{prompt:.0f} tok/s"))
    kv = metrics.get("llamacpp:kv_cache_usage_ratio")
    if kv is not None:
        rows.append(("srv kv", f"{kv * 100:.0f}%"))
    queued = metrics.get("llamacpp:requests_deferred")
    if queued:
        rows.append(("queued", f"{queued:.0f}"))
    return tuple(rows)


def ollama_rows(ps: object) -> Rows:
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        return ()
    rows: list[tuple[str, str]] = [("loaded", str(len(models)))]
    for model in models[:3]:
        if not isinstance(model, dict):
            continue
        size = float(model.get("size") or 0)
        vram = float(model.get("size_vram") or 0)
        share = f", {vram / size * 100:.0f}% GPU" if size else ""
        rows.append((str(model.get("name", "?"))[:7], f"{_gib(size)}{share}"))
    return tuple(rows)


def vllm_rows(metrics: dict[str, float]) -> Rows:
    if not any(name.startswith("vllm:") for name in metrics):
        return ()
    rows: list[tuple[str, str]] = []
    running = metrics.get("vllm:num_requests_running")
    if running is not None:
        waiting = metrics.get("vllm:num_requests_waiting", 0.0)
        rows.append(("reqs", _("{running:.0f} running, {waiting:.0f} waiting",
                               running=running, waiting=waiting)))
    cache = metrics.get("vllm:gpu_cache_usage_perc", metrics.get("vllm:kv_cache_usage_perc"))
    if cache is not None:
        rows.append(("srv kv", f"{cache * 100:.0f}%"))
    rate = metrics.get("vllm:avg_generation_throughput_toks_per_s")
    if rate:
        rows.append(("srv gen", f"{rate:.1f} tok/s"))
    return tuple(rows)


def fetch(base_url: str, api_key: str | None = None, *, timeout: float = 1.0) -> RemoteFigures:
    """Ask the server at ``base_url`` (its OpenAI base, e.g. ``http://host:8080/v1``) for its
    own figures. Never raises; an unreachable server is an ``error``."""
    parts = urlsplit(base_url)
    root = parts.path.rstrip("/").removesuffix("/v1")
    headers = {"User-Agent": "lmdesk"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def get(path: str) -> tuple[int, bytes]:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout,
                context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request("GET", root + path, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(1 << 20)
        finally:
            conn.close()

    def json_of(body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    from tui.offline import allow_network

    try:
        with allow_network(base_url):  # the endpoint the user chose to run on
            return _identify(get, json_of)
    except (OSError, http.client.HTTPException) as exc:
        return RemoteFigures("", (), f"{parts.netloc}: {exc}")


def _identify(get: Any, json_of: Any) -> RemoteFigures:
    """Which kind of server answers, and its figures (Ollama, then vLLM, then llama-server)."""
    status, body = get("/api/ps")
    if status == 200 and isinstance(json_of(body), dict) and "models" in json_of(body):
        rows = ollama_rows(json_of(body))
        return RemoteFigures("ollama", rows)
    m_status, m_body = get("/metrics")
    metrics = parse_prometheus(m_body.decode("utf-8", "replace")) if m_status == 200 \
        else {}
    if vllm_rows(metrics):
        return RemoteFigures("vllm", vllm_rows(metrics))
    s_status, s_body = get("/slots")
    slots = json_of(s_body) if s_status == 200 else None
    rows = llama_server_rows(slots, metrics)
    if rows:
        return RemoteFigures("llama-server", rows)
    return RemoteFigures("", ())
