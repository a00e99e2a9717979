"""Remote endpoints the user configured: an OpenAI-compatible server (URL, key, default model).

Kept in the store's "endpoints" setting, a list of ``{"id", "name", "url", "api_key",
"default_model"}``: the same place the doctor reads (``tui.doctor.health.remote_endpoints``),
so its list of what uses the network stays true. No Textual here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from tui.i18n import _

SETTING = "endpoints"


class SettingsStore(Protocol):
    def get_setting(self, key: str, default: Any = None) -> Any: ...

    def set_setting(self, key: str, value: Any) -> None: ...


class EndpointError(ValueError):
    """An endpoint that cannot be added (bad URL, duplicate name)."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    base_url: str
    api_key: str | None = None
    default_model: str | None = None

    @property
    def host(self) -> str:
        parts = urlsplit(self.base_url)
        return parts.netloc or self.base_url

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "url": self.base_url,
                "api_key": self.api_key or "", "default_model": self.default_model or ""}

    @classmethod
    def from_row(cls, row: Any) -> Endpoint | None:
        """An endpoint from a stored row (a dict, or a bare URL); None when unusable."""
        if isinstance(row, str):
            row = {"url": row}
        if not isinstance(row, dict):
            return None
        url = row.get("url") or row.get("base_url") or ""
        if not isinstance(url, str) or not url.strip():
            return None
        name = row.get("name")
        key = row.get("api_key")
        model = row.get("default_model")
        return cls(
            id=str(row.get("id") or url),
            name=str(name) if isinstance(name, str) and name else (urlsplit(url).netloc or url),
            base_url=url.strip(),
            api_key=key if isinstance(key, str) and key else None,
            default_model=model if isinstance(model, str) and model else None,
        )


def check_url(url: str) -> str:
    """The URL, stripped; raises ``EndpointError`` unless it is http(s) with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(_("an endpoint needs an http:// or https:// URL, got {url!r}", url=url))
    return url


class EndpointLibrary:
    """List, add, remove and find endpoints in the store's "endpoints" setting."""

    def __init__(self, store: SettingsStore) -> None:
        self.store = store

    def _rows(self) -> list[Any]:
        value = self.store.get_setting(SETTING)
        if isinstance(value, list):
            return list(value)
        if isinstance(value, dict):  # the older {name: url} form the doctor also reads
            return [{"name": k, "url": v} if isinstance(v, str) else v for k, v in value.items()]
        return []

    def list(self) -> list[Endpoint]:
        out = []
        for row in self._rows():
            endpoint = Endpoint.from_row(row)
            if endpoint is not None:
                out.append(endpoint)
        return out

    def get(self, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self.list() if e.id == endpoint_id), None)

    def add(self, name: str, base_url: str, api_key: str | None = None,
            default_model: str | None = None) -> Endpoint:
        url = check_url(base_url)
        name = name.strip() or (urlsplit(url).netloc or url)
        endpoints = self.list()
        if any(e.name == name for e in endpoints):
            raise EndpointError(_("there is already an endpoint named {name!r}", name=name))
        endpoint = Endpoint(uuid.uuid4().hex[:12], name, url, (api_key or "").strip() or None,
                            (default_model or "").strip() or None)
        self.store.set_setting(SETTING, [e.to_row() for e in endpoints] + [endpoint.to_row()])
        return endpoint

    def remove(self, endpoint_id: str) -> bool:
        endpoints = self.list()
        kept = [e for e in endpoints if e.id != endpoint_id]
        if len(kept) == len(endpoints):
            return False
        self.store.set_setting(SETTING, [e.to_row() for e in kept])
        return True


def remote_key(base_url: str, model: str) -> str:
    """The model manager's key for a remote model: (base_url, model) in one string."""
    return f"remote:{base_url.rstrip('/')}#{model}"


def is_remote_key(path: str) -> bool:
    return path.startswith("remote:")
