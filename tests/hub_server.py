"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for download tests.

It answers what huggingface_hub 2.4 asks when downloading a file:
  HEAD/GET /{repo}/resolve/{revision}/{filename}  (X-Repo-Commit, ETag, X-Linked-Size,
      Content-Length, Accept-Ranges; GET honours ``Range: bytes=N-`` with 206)
  GET /api/models/{repo}/tree/{revision}          (the file list with sizes)
  GET /api/models/{repo}/revision/{revision}      (id, sha, siblings)
Unknown repos and files get 404 with the X-Error-Code the client maps to its errors.

``drop_after[filename] = n`` makes the next GET of that file close the connection after n
bytes of the body (once), to test resuming.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>tree|revision)/(?P<rev>[^/]+)")


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Path]] = {}
        self.drop_after: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._etags: dict[Path, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, repo_id: str, filename: str, path: Path) -> None:
        self.repos.setdefault(repo_id, {})[filename] = path

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def etag(self, path: Path) -> str:
        with self._lock:
            if path not in self._etags:
                h = hashlib.sha256()
                with path.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                self._etags[path] = h.hexdigest()
            return self._etags[path]

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def _record(self) -> None:
        self.server_hub.requests.append((self.command, self.path, dict(self.headers.items())))

    def _send_json(self, data: Any, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._record()
        self._resolve(head=True)

    def do_GET(self) -> None:
        self._record()
        path = unquote(urlsplit(self.path).path)
        api = _API.match(path)
        if api:
            self._api(api.group("repo"), api.group("kind"))
        else:
            self._resolve(head=False)

    def _api(self, repo: str, kind: str) -> None:
        files = self.server_hub.repos.get(repo)
        if files is None:
            self._not_found("RepoNotFound", "Repository not found")
            return
        if kind == "tree":
            self._send_json([
                {"type": "file", "oid": self.server_hub.etag(p)[:40], "size": p.stat().st_size,
                 "path": name}
                for name, p in sorted(files.items())
            ])
        else:
            self._send_json({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                             "siblings": [{"rfilename": name} for name in sorted(files)]})

    def _resolve(self, *, head: bool) -> None:
        m = _RESOLVE.match(unquote(urlsplit(self.path).path))
        files = self.server_hub.repos.get(m.group("repo")) if m else None
        if m is None or files is None:
            self._not_found("RepoNotFound", "Repository not found")
            return
        name = m.group("file")
        path = files.get(name)
        if path is None:
            self._not_found("EntryNotFound", f"{name} does not exist")
            return
        size = path.stat().st_size
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng and not head:
            match = re.match(r"bytes=(\d+)-", rng)
            if match:
                start = int(match.group(1))
                status = 206
        etag = self.server_hub.etag(path)
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if head:
            return
        drop = self.server_hub.drop_after.pop(name, None)
        sent = 0
        with path.open("rb") as fh:
            fh.seek(start)
            while True:
                block = fh.read(1 << 20)
                if not block:
                    break
                if drop is not None and sent + len(block) > drop:
                    self.wfile.write(block[: drop - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away (a cancelled download)
                sent += len(block)
