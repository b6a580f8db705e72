"""A local stand-in for the Hugging Face Hub's HTTP routes, served by a real HTTP server.

The real `huggingface_hub` client is pointed at it (HF_ENDPOINT or `endpoint=`). It serves the
routes that client calls for LayerLab: model search (`/api/models`), model info, the repo tree
(sizes and LFS sha256), and `resolve` (HEAD with the headers hf_hub_download reads, GET with
Range). Repos are folders of real files that tests generate; faults are switched on per repo or
per file: gated (401), missing (404), too many requests (429), a server error (5xx), a
connection dropped mid-file, a flipped byte, a slow line (bytes per second), added latency,
and a lost network (`refuse_connections`, then `answer_again` on the same address).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "c0ffee" + "0" * 34
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Repo:
    """One model repo: its files on disk and the faults it shows."""

    repo_id: str
    folder: Path
    downloads: int = 0
    likes: int = 0
    gated: bool = False  # answers 401 GatedRepo unless the request carries `token`
    token: str = ""
    parameters: int = 0
    last_modified: str = "2026-11-02T10:00:00.000Z"
    # faults by file name
    fail_next: dict[str, list[int]] = field(default_factory=dict)  # statuses, one per request
    drop_after: dict[str, int] = field(default_factory=dict)  # close after N body bytes, once
    # reset the connection (RST) after N body bytes, every time: a line that never lets it by
    reset_after: dict[str, int] = field(default_factory=dict)
    flip_byte: dict[str, int] = field(default_factory=dict)  # offset of a byte served wrong
    rate: int = 0  # bytes per second per transfer, 0: as fast as possible

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def sha256(self, path: Path) -> str:
        return _sha256(path)


_sha_cache: dict[tuple[str, float, int], str] = {}


def _sha256(path: Path) -> str:
    """The file's sha256; a header-only giant (a sparse file of tens of GB that no test
    downloads) gets a stand-in digest instead of an hour of hashing zeros."""
    st = path.stat()
    if st.st_size > 1 << 30:
        return hashlib.sha256(f"{path.name}:{st.st_size}".encode()).hexdigest()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


class HubStandIn:
    def __init__(self, latency_s: float = 0.0):
        self.repos: dict[str, Repo] = {}
        self.latency_s = latency_s
        self.bytes_sent = 0
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.ranges: list[tuple[str, str]] = []  # (file, Range header) of each file GET
        self.search_fail: list[int] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # connections being served (to cut them)
        self._down = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with hub._lock:
                    hub._open.add(self.connection)

            def finish(self) -> None:
                with hub._lock:
                    hub._open.discard(self.connection)
                super().finish()

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

            def do_GET(self) -> None:
                hub._handle(self, body=True)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._handler = Handler
        self._listen(0)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _listen(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_repo(self, repo_id: str, folder: Path, **kw) -> Repo:
        repo = Repo(repo_id, Path(folder), **kw)
        self.repos[repo_id] = repo
        return repo

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._down:
            self._stop_listening()

    def _stop_listening(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    # -- the network goes away and comes back ------
    def refuse_connections(self) -> None:
        """As if the network went away: new connections are refused (nothing listens on the
        port), and the open ones are cut, a file on its way and an idle keep-alive alike."""
        self._down = True
        self._stop_listening()
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def answer_again(self) -> None:
        """The network is back: the same address answers again."""
        self._listen(int(self.endpoint.rsplit(":", 1)[1]))
        self._thread.start()
        self._down = False

    # -- answering ------
    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        with self._lock:
            self.requests.append((h.command, path))
        if self.latency_s:
            time.sleep(self.latency_s)
        query = parse_qs(url.query)
        if path == "/api/models":
            if self.search_fail:
                return _error(h, self.search_fail.pop(0), "")
            return _json(h, self._search(query), body)
        m = _TREE.match(path)
        if m:
            repo = self._repo(h, m["repo"])
            if repo:
                _json(h, self._tree(repo, m["path"] or ""), body)
            return
        m = _INFO.match(path)
        if m:
            repo = self._repo(h, m["repo"])
            if repo:
                _json(h, self._info(repo), body)
            return
        m = _RESOLVE.match(path)
        if m:
            repo = self._repo(h, m["repo"])
            if repo:
                self._resolve(h, repo, m["file"], body)
            return
        _error(h, 404, "")

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            _error(h, 404, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and h.headers.get("Authorization", "") != f"Bearer {repo.token}":
            _error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted.")
            return None
        return repo

    def _search(self, query: dict) -> list[dict]:
        words = (query.get("search") or [""])[0].lower().split()
        limit = int((query.get("limit") or ["1000"])[0])
        found = [
            r
            for r in self.repos.values()
            if all(w in r.repo_id.lower() for w in words)
            and any(p.suffix == ".gguf" for p in r.files())
        ]
        found.sort(key=lambda r: -r.downloads)
        return [self._summary(r) for r in found[:limit]]

    def _summary(self, r: Repo) -> dict:
        out = {
            "_id": r.repo_id,
            "id": r.repo_id,
            "downloads": r.downloads,
            "likes": r.likes,
            "lastModified": r.last_modified,
            "gated": "auto" if r.gated else False,
            "private": False,
            "tags": ["gguf"],
            "library_name": "gguf",
        }
        if r.parameters:
            out["gguf"] = {"total": r.parameters, "architecture": "llama"}
        return out

    def _info(self, r: Repo) -> dict:
        out = self._summary(r)
        out["sha"] = COMMIT
        out["siblings"] = [{"rfilename": str(p.relative_to(r.folder))} for p in r.files()]
        return out

    def _tree(self, r: Repo, under: str) -> list[dict]:
        out = []
        for p in r.files():
            rel = str(p.relative_to(r.folder))
            if under and not rel.startswith(under.rstrip("/") + "/"):
                continue
            size = p.stat().st_size
            entry = {"type": "file", "oid": "a" * 40, "size": size, "path": rel}
            if p.suffix == ".gguf":
                entry["lfs"] = {"oid": r.sha256(p), "size": size, "pointerSize": 134}
            out.append(entry)
        return out

    def _resolve(self, h: BaseHTTPRequestHandler, r: Repo, name: str, body: bool) -> None:
        file = r.folder / name
        if not file.is_file():
            return _error(h, 404, "EntryNotFound", f"{name} does not exist")
        fails = r.fail_next.get(name)
        if fails:
            return _error(h, fails.pop(0), "")
        size = file.stat().st_size
        sha = r.sha256(file) if file.suffix == ".gguf" else f"{size:x}"
        start, end, status = 0, size - 1, 200
        m = _RANGE.match(h.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if start >= size:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        h.send_response(status)
        h.send_header("Content-Length", str(end - start + 1))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", f'"{sha}"')
        h.send_header("X-Linked-Etag", f'"{sha}"')
        h.send_header("X-Linked-Size", str(size))
        h.send_header("X-Repo-Commit", COMMIT)
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if not body:
            return
        with self._lock:
            self.ranges.append((name, h.headers.get("Range", "")))
        drop = r.drop_after.pop(name, None)
        reset = r.reset_after.get(name)
        flip = r.flip_byte.get(name)
        sent = 0
        began = time.monotonic()
        with file.open("rb") as f:
            f.seek(start)
            at = start
            while at <= end:
                chunk = f.read(min(64 * 1024, end - at + 1))
                if not chunk:
                    break
                if flip is not None and at <= flip < at + len(chunk):
                    b = bytearray(chunk)
                    b[flip - at] ^= 0xFF
                    chunk = bytes(b)
                if drop is not None and sent + len(chunk) > drop:
                    chunk = chunk[: drop - sent]
                if reset is not None and sent + len(chunk) >= reset:
                    with contextlib.suppress(OSError):
                        h.wfile.write(chunk[: reset - sent])
                    return _reset(h)
                try:
                    h.wfile.write(chunk)
                    h.wfile.flush()
                except OSError:
                    return
                with self._lock:
                    self.bytes_sent += len(chunk)
                sent += len(chunk)
                at += len(chunk)
                if drop is not None and sent >= drop:
                    h.close_connection = True
                    return
                if r.rate:
                    ahead = sent / r.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Break the connection with a reset (RST, no FIN), so the client's read fails at once
    (a closed connection would look like a clean end it retries in-process)."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        h.rfile.close()
        h.wfile.close()
        h.connection.close()


def _json(h: BaseHTTPRequestHandler, data: object, body: bool) -> None:
    raw = json.dumps(data).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    h.end_headers()
    if body:
        h.wfile.write(raw)


def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str = "") -> None:
    raw = json.dumps({"error": message or f"error {status}"}).encode()
    h.send_response(status)
    if code:
        h.send_header("X-Error-Code", code)
    if message:
        h.send_header("X-Error-Message", message)
    if status == 429:
        h.send_header("Retry-After", "1")
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(raw)
