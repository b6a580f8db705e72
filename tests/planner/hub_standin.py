"""A local stand-in for the hub's file route, with HTTP Range, served by a real HTTP server.

huggingface_hub builds `{endpoint}/{repo_id}/resolve/{revision}/{filename}`; this serves
files from a folder at that route and counts the bytes it sends.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_ROUTE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class HubStandIn:
    def __init__(self, root: Path, repo_id: str):
        self.root = Path(root)
        self.repo_id = repo_id
        self.bytes_sent = 0
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                m = _ROUTE.match(self.path.split("?")[0])
                if not m or m["repo"] != hub.repo_id:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = hub.root / m["file"]
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = path.stat().st_size
                hub.requests.append(self.headers.get("Range", ""))
                r = _RANGE.match(self.headers.get("Range", ""))
                start, end = 0, size - 1
                status = 200
                if r:
                    start = int(r.group(1))
                    end = min(int(r.group(2)) if r.group(2) else size - 1, size - 1)
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{size}"')
                self.send_header("X-Repo-Commit", "0" * 40)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if body:
                    with path.open("rb") as f:
                        f.seek(start)
                        data = f.read(end - start + 1)
                    hub.bytes_sent += len(data)
                    self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
