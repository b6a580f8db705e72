"""The worker's end of the link: the one LAN-facing port of a sharing worker.

It admits only paired heads (their certificates, checked in the TLS handshake), answers
`status` and `watch`, relays `rpc` sessions to llama.cpp's RPC server on loopback (one
head at a time; everyone else is told who is served), and runs the worker's half of
pairing (pairing.py's message logic inside the TLS session).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from layerlab import __version__
from layerlab.core.cluster import relay
from layerlab.core.cluster.identity import Identity, Peer, TrustStore, fingerprint_of_cert
from layerlab.core.cluster.link_protocol import (
    HANDSHAKE_TIMEOUT_S,
    HEARTBEAT_S,
    LINK_PROTOCOL,
    RPC_VERSION,
    LinkError,
    _rpc_compatible,
    recv_line,
    send_line,
    version_problem,
)
from layerlab.core.cluster.link_tls import server_context
from layerlab.core.cluster.pairing import PairingCode, PairingFailed, WorkerPairing
from layerlab.core.cluster.status import WorkerStatus
from layerlab.core.endpoint import Endpoint


@dataclass
class LinkCounters:
    handshakes_refused: int = 0
    requests_refused: int = 0
    rpc_sessions: int = 0  # loopback RPC connections ever opened: only for admitted heads
    pairings: int = 0
    pairings_failed: int = 0


@dataclass
class _Session:
    fingerprint: str
    name: str
    connections: int = 0
    sockets: set = field(default_factory=set)


class LinkServer:
    """The worker's LAN endpoint. One head at a time; everyone else is told who is served."""

    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        listen: Endpoint,
        rpc: Endpoint,
        status: Callable[[], WorkerStatus],
        on_event: Callable[[dict], None] | None = None,
        rpc_version: str = RPC_VERSION,
    ):
        if not rpc.is_loopback:
            raise ValueError("the RPC server behind the link must listen on loopback")
        self.identity = identity
        self.trust = trust
        self.listen = listen
        self.rpc = rpc
        self.status = status
        self.on_event = on_event or (lambda e: None)
        self.rpc_version = rpc_version
        self.counters = LinkCounters()
        self.code = PairingCode(
            on_change=lambda c: self.on_event({"event": "pairing_code", "code": c})
        )
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._ctx: tuple[tuple, ssl.SSLContext] | None = None
        self._sock: socket.socket | None = None
        self._closed = threading.Event()

    # public --------------------------------------------------------------------------
    def start(self) -> Endpoint:
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.listen.host, self.listen.port))
        s.listen(16)
        self._sock = s
        self.listen = Endpoint(self.listen.host, s.getsockname()[1])
        threading.Thread(target=self._accept_loop, name="link-accept", daemon=True).start()
        return self.listen

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()

    @property
    def serving(self) -> str | None:
        with self._lock:
            return self._session.name if self._session else None

    def worker_info(self) -> dict:
        return {
            "name": self.identity.name,
            "layerlab": __version__,
            "link": LINK_PROTOCOL,
            "rpc": self.rpc_version,
            "fingerprint": self.identity.fingerprint,
        }

    # internals -----------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        stamp = self.trust.stamp()
        if self._ctx is None or self._ctx[0] != stamp:
            pems = [p.cert_pem for p in self.trust.heads()]
            self._ctx = (stamp, server_context(self.identity, pems))
        return self._ctx[1]

    def _accept_loop(self) -> None:
        assert self._sock is not None
        relay.accept_forever(self._sock, self._closed, self._serve, "link-conn")

    def _refuse_handshake(self, addr: tuple, why: str) -> None:
        self.counters.handshakes_refused += 1
        self.on_event({"event": "refused", "peer": addr[0], "why": why})

    def _serve(self, conn: socket.socket, addr: tuple) -> None:
        relay.tune(conn, lan=True)
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self._context().wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            # Not TLS (plain RPC bytes, a port scan), or a certificate we never paired.
            self._refuse_handshake(addr, getattr(e, "reason", None) or type(e).__name__)
            conn.close()
            return
        try:
            self._serve_tls(tls, addr)
        except (OSError, LinkError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def _serve_tls(self, tls: ssl.SSLSocket, addr: tuple) -> None:
        der = tls.getpeercert(binary_form=True)
        head = self.trust.head(fingerprint_of_cert(der)) if der else None
        if der and head is None:  # unpaired since the context was built
            self._refuse_handshake(addr, "unpaired certificate")
            return
        req = recv_line(tls)
        op = req.get("op")
        if req.get("link") != LINK_PROTOCOL or not _rpc_compatible(
            self.rpc_version, str(req.get("rpc", ""))
        ):
            self.counters.requests_refused += 1
            send_line(
                tls,
                {
                    "ok": False,
                    "kind": "version",
                    "worker": self.worker_info(),
                    "problem": version_problem(self.worker_info(), req),
                },
            )
            return
        if op == "pair":
            self._pair(tls, req, addr)
            return
        if head is None:
            self.counters.requests_refused += 1
            send_line(
                tls,
                {
                    "ok": False,
                    "kind": "not_paired",
                    "worker": self.worker_info(),
                    "problem": "This head is not paired with this worker.",
                },
            )
            return
        if op == "status":
            doc = self.status().model_copy(update={"serving": self.serving})
            send_line(
                tls,
                {"ok": True, "worker": self.worker_info(), "status": doc.model_dump(mode="json")},
            )
        elif op == "watch":
            send_line(tls, {"ok": True, "worker": self.worker_info()})
            while not self._closed.is_set():
                send_line(tls, {"t": time.time(), "serving": self.serving})
                time.sleep(HEARTBEAT_S)
        elif op == "rpc":
            self._relay_rpc(tls, head)
        else:
            send_line(tls, {"ok": False, "kind": "protocol", "problem": f"unknown request {op!r}"})

    def _relay_rpc(self, tls: ssl.SSLSocket, head: Peer) -> None:
        with self._lock:
            s = self._session
            if s is not None and s.fingerprint != head.fingerprint:
                self.counters.requests_refused += 1
                busy_with = s.name
                s = None
            else:
                if s is None:
                    s = self._session = _Session(head.fingerprint, head.name)
                    self.on_event({"event": "serving", "head": head.name})
                s.connections += 1
                busy_with = None
        if busy_with is not None:
            send_line(
                tls,
                {
                    "ok": False,
                    "kind": "busy",
                    "serving": busy_with,
                    "worker": self.worker_info(),
                    "problem": f"busy, serving {busy_with}",
                },
            )
            return
        try:
            try:
                rpc = socket.create_connection((self.rpc.host, self.rpc.port), timeout=2)
            except OSError:
                send_line(
                    tls,
                    {
                        "ok": False,
                        "kind": "unreachable",
                        "worker": self.worker_info(),
                        "problem": "The worker's llama.cpp RPC server is not running.",
                    },
                )
                return
            self.counters.rpc_sessions += 1
            with rpc:
                relay.tune(rpc)
                rpc.settimeout(None)
                send_line(tls, {"ok": True, "worker": self.worker_info()})
                tls.settimeout(None)
                relay.pump(tls, rpc)
        finally:
            with self._lock:
                s.connections -= 1
                if s.connections == 0 and self._session is s:
                    self._session = None
                    self.on_event({"event": "idle", "head": head.name})

    def _pair(self, tls: ssl.SSLSocket, req: dict, addr: tuple) -> None:
        cert = req.get("cert")
        name = str(req.get("name") or addr[0])[:64]
        try:
            head_fp = fingerprint_of_cert(str(cert).encode())
        except ValueError:
            send_line(tls, {"ok": False, "kind": "protocol", "problem": "bad certificate"})
            return
        lock = self.code.attempt()
        if not lock.acquire(timeout=3):
            send_line(
                tls,
                {
                    "ok": False,
                    "kind": "busy",
                    "problem": "Another head is pairing with this worker right now.",
                },
            )
            return
        try:
            attempt = WorkerPairing(self.code.code, self.identity.fingerprint, head_fp)
            try:
                reply = attempt.answer(req)
            except PairingFailed:
                send_line(tls, {"ok": False, "kind": "protocol", "problem": "malformed pairing"})
                return
            send_line(tls, {"ok": True, "worker": self.worker_info(), **reply})
            try:
                attempt.check(recv_line(tls))
            except (PairingFailed, OSError, LinkError, ValueError):
                self.counters.pairings_failed += 1
                self.on_event({"event": "pairing_failed", "peer": addr[0]})
                with contextlib.suppress(OSError):
                    send_line(
                        tls,
                        {
                            "ok": False,
                            "kind": "wrong_code",
                            "problem": "The pairing code did not match.",
                        },
                    )
                self.code.failed()
                return
            self.trust.add("head", Peer(head_fp, name, str(cert), addr[0], time.time()))
            self.counters.pairings += 1
            send_line(
                tls,
                {"ok": True, "worker": self.worker_info(), "cert": self.identity.cert_pem.decode()},
            )
            self.on_event({"event": "paired", "head": name})
            self.code.succeeded()
        finally:
            lock.release()
