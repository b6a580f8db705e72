"""The head's end of the link: a loopback port llama.cpp's RPC client can use unchanged.

`LinkForwarder` listens on 127.0.0.1:P and carries each connection to a paired worker over
the TLS link; on P+1 it answers `GET /status` with the worker's status document fetched over
the link, so `probe.probe("127.0.0.1:P")` works exactly as it does for a plain worker. The
LoadPlan names the forwarder's endpoint (`DeviceRef.rpc(forwarder.endpoint)`).

`WorkerWatch` keeps a heartbeat session open to the worker and reports, within a second or
so of it happening, a worker that stopped (its kernel closes the session at once) and, within
HEARTBEAT_TIMEOUT_S, one that froze or whose network vanished. llama.cpp has no timeouts of
its own: the supervisor acts on these reports.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from layerlab.core.cluster import relay
from layerlab.core.cluster.identity import Identity, Peer
from layerlab.core.cluster.link_client import open_link, worker_status
from layerlab.core.cluster.link_protocol import LinkError, recv_line
from layerlab.core.endpoint import Endpoint

HEARTBEAT_TIMEOUT_S = 3.0


class LinkForwarder:
    def __init__(self, identity: Identity, worker: Peer, address: Endpoint | None = None):
        self.identity = identity
        self.worker = worker
        self.address = address or Endpoint.parse(worker.address)
        self.last_problem: LinkError | None = None
        self.stats = {"connections": 0, "refused": 0}
        # Bytes carried to / from the worker and seconds spent waiting on it (relay.pump):
        # finished sessions, plus live ones in _flows.
        self._carried = [0, 0, 0.0]
        self._flows: list[dict] = []
        self._rpc_sock: socket.socket | None = None
        self._status: ThreadingHTTPServer | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def endpoint(self) -> str:
        """'127.0.0.1:P', for DeviceRef.rpc() and probe()."""
        assert self._rpc_sock is not None, "start() first"
        return f"127.0.0.1:{self._rpc_sock.getsockname()[1]}"

    def start(self) -> LinkForwarder:
        self._rpc_sock, self._status = _bind_pair(self._status_handler())
        threading.Thread(target=self._accept_loop, name="fwd-accept", daemon=True).start()
        threading.Thread(target=self._status.serve_forever, name="fwd-status", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop listening and cut every session (a model using them is lost with them)."""
        self._closed.set()
        if self._rpc_sock is not None:
            with contextlib.suppress(OSError):
                self._rpc_sock.shutdown(socket.SHUT_RDWR)
            self._rpc_sock.close()
        if self._status is not None:
            self._status.shutdown()
            self._status.server_close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> LinkForwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        assert self._rpc_sock is not None
        relay.accept_forever(
            self._rpc_sock, self._closed, lambda conn, _addr: self._carry(conn), "fwd-conn"
        )

    def _carry(self, local: socket.socket) -> None:
        with local:
            relay.tune(local)
            try:
                tls, _ = open_link(self.identity, self.worker, "rpc", address=self.address)
            except LinkError as e:
                # Closing makes llama.cpp's client fail; the supervisor's probe through this
                # forwarder reads the reason from the status port first.
                self.last_problem = e
                self.stats["refused"] += 1
                return
            self.last_problem = None
            self.stats["connections"] += 1
            flow = {"a": 0, "b": 0, "waited": 0.0}
            with self._lock:
                self._open.update((local, tls))
                self._flows.append(flow)
            try:
                tls.settimeout(None)
                local.settimeout(None)
                relay.pump(local, tls, flow)
            finally:
                with self._lock:
                    self._open.difference_update((local, tls))
                    self._flows.remove(flow)
                    self._carried[0] += flow["a"]
                    self._carried[1] += flow["b"]
                    self._carried[2] += flow["waited"]
                tls.close()

    @property
    def bytes_carried(self) -> tuple[int, int]:
        """(to the worker, from the worker) over every session so far, live ones included."""
        with self._lock:
            return (
                self._carried[0] + sum(f["a"] for f in self._flows),
                self._carried[1] + sum(f["b"] for f in self._flows),
            )

    @property
    def waited_s(self) -> float:
        """Seconds llama.cpp has waited on the worker's answers through this forwarder (the
        worker's compute plus the link, both ways; see relay), live sessions included."""
        with self._lock:
            return self._carried[2] + sum(f["waited"] for f in self._flows)

    def _status_handler(self) -> type[BaseHTTPRequestHandler]:
        fwd = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/status":
                    self.send_error(404)
                    return
                code = 200
                try:
                    body = worker_status(
                        fwd.identity, fwd.worker, timeout=2.0, address=fwd.address
                    ).to_json()
                except LinkError as e:
                    # Not 200: probe.fetch_status() and the supervisor's watch then read
                    # "no status", exactly as for a plain worker that is gone.
                    code = 503
                    body = json.dumps(
                        {"link_problem": {"kind": e.kind, "problem": e.problem}}
                    ).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A prober that gave up (its timeout is shorter than a silent worker's) is gone.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _bind_pair(handler: type[BaseHTTPRequestHandler]) -> tuple[socket.socket, ThreadingHTTPServer]:
    """Two consecutive loopback ports: P for RPC, P+1 for status, as a plain worker has."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if port >= 65535:
            s.close()
            continue
        try:
            status = ThreadingHTTPServer(("127.0.0.1", port + 1), handler)
        except OSError:
            s.close()
            continue
        status.daemon_threads = True
        s.listen(16)
        return s, status
    raise OSError("no two consecutive free loopback ports")


@dataclass(frozen=True)
class WatchState:
    state: str  # connecting | ok | lost
    problem: str = ""
    kind: str = ""  # why lost: stopped | silent | a LinkError kind
    since: float = 0.0
    serving: str | None = None


class WorkerWatch:
    """Heartbeats from one paired worker; on_change(WatchState) on every transition."""

    def __init__(
        self,
        identity: Identity,
        worker: Peer,
        on_change: Callable[[WatchState], None],
        address: Endpoint | None = None,
        retry_s: float = 1.0,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
    ):
        self.identity = identity
        self.worker = worker
        self.address = address or Endpoint.parse(worker.address)
        self.on_change = on_change
        self.retry_s = retry_s
        self.timeout_s = heartbeat_timeout_s
        self.state = WatchState("connecting", since=time.monotonic())
        self._stop = threading.Event()
        self._tls = None
        self._thread = threading.Thread(target=self._run, name="worker-watch", daemon=True)

    def start(self) -> WorkerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        tls = self._tls
        if tls is not None:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _set(
        self, state: str, problem: str = "", kind: str = "", serving: str | None = None
    ) -> None:
        if state == self.state.state and kind == self.state.kind:
            return
        self.state = WatchState(state, problem, kind, time.monotonic(), serving)
        self.on_change(self.state)

    def _run(self) -> None:
        name = self.worker.name
        while not self._stop.is_set():
            try:
                tls, _ = open_link(
                    self.identity,
                    self.worker,
                    "watch",
                    timeout=self.timeout_s,
                    address=self.address,
                )
            except LinkError as e:
                self._set("lost", e.problem, e.kind)
                self._stop.wait(self.retry_s)
                continue
            self._tls = tls
            try:
                with tls:
                    tls.settimeout(self.timeout_s)
                    while not self._stop.is_set():
                        beat = recv_line(tls)
                        self._set("ok", serving=beat.get("serving"))
            except TimeoutError:
                self._set(
                    "lost",
                    f"{name} stopped answering for {self.timeout_s:g} s: it is frozen "
                    "or its network is gone.",
                    "silent",
                )
            except (OSError, LinkError, ValueError):
                if not self._stop.is_set():
                    self._set(
                        "lost", f"{name} stopped (its LayerLab worker closed the link).", "stopped"
                    )
            self._tls = None
            self._stop.wait(self.retry_s)
