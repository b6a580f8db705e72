"""The LAN link: TLS 1.3 with certificates pinned both ways, in front of llama.cpp's RPC.

A sharing worker keeps llama.cpp's RPC server on loopback and listens on the LAN only here.
Every connection is a TLS 1.3 session (Python's ssl / OpenSSL; no crypto of our own):

- the worker always presents its certificate; a head checks it against the one pinned at
  pairing (a different one: "the worker's key changed", and no connection);
- a paired head presents its certificate, which the worker checks against the heads it has
  paired. An unknown certificate fails the handshake: nothing is read from that peer, and
  the loopback RPC port is never opened for it;
- a head without a certificate may only pair (pairing.py runs SPAKE2 inside the session).

After the handshake the head sends one JSON line, the request: `op` is `pair`, `status`,
`watch` (a heartbeat every 0.5 s, so a head notices a frozen or cut-off worker), or `rpc`.
The worker answers one JSON line; after an accepted `rpc` the session carries llama.cpp's
RPC bytes unchanged in both directions (relay.py), until either side ends it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from layerlab import __version__
from layerlab.core.cluster import relay, rpc_wire
from layerlab.core.cluster.identity import (
    Identity,
    Peer,
    TrustStore,
    fingerprint_of_cert,
    short_fingerprint,
)
from layerlab.core.cluster.pairing import HeadPairing, PairingCode, PairingFailed, WorkerPairing
from layerlab.core.cluster.status import WorkerStatus, parse_status
from layerlab.core.endpoint import Endpoint

LINK_PROTOCOL = 1
DEFAULT_LINK_PORT = 50050
RPC_VERSION = f"{rpc_wire.RPC_PROTO_MAJOR}.{rpc_wire.RPC_PROTO_MINOR}.0"
MAX_LINE = 64 * 1024
HANDSHAKE_TIMEOUT_S = 5.0
HEARTBEAT_S = 0.5


class LinkError(Exception):
    """The link to a worker was refused or failed; `problem` says why in the person's words.

    kind: unreachable | not_paired | key_changed | busy | version | wrong_code | protocol
    """

    def __init__(self, kind: str, problem: str, worker: dict | None = None):
        super().__init__(problem)
        self.kind = kind
        self.problem = problem
        self.worker = worker or {}


# -- TLS contexts ---------------------------------------------------------------------------
def _base(side: int, identity: Identity | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    # Pinned self-signed certificates are their own trust anchors.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def server_context(identity: Identity, trusted_head_pems: list[str]) -> ssl.SSLContext:
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, identity)
    # OPTIONAL: a head without a certificate may pair; one with a certificate must be paired.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    if trusted_head_pems:
        ctx.load_verify_locations(cadata="".join(trusted_head_pems))
    ctx.num_tickets = 0  # no resumption: every session is a full, fresh handshake
    return ctx


def client_context(identity: Identity | None, pinned_pem: str | None) -> ssl.SSLContext:
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, identity)
    ctx.check_hostname = False  # the pinned certificate is the name
    if pinned_pem:
        ctx.load_verify_locations(cadata=pinned_pem)
    else:
        ctx.verify_mode = ssl.CERT_NONE  # pairing or a key check only; never carries RPC
    return ctx


# -- one JSON line each way -------------------------------------------------------------------
def send_line(sock: socket.socket, obj: dict) -> None:
    sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def recv_line(sock: socket.socket) -> dict:
    """One request or answer line. The exchange is lockstep, so nothing follows it yet."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(MAX_LINE - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        if len(buf) >= MAX_LINE and not buf.endswith(b"\n"):
            raise LinkError("protocol", "The other side sent an over-long message.")
    if buf.count(b"\n") != 1:
        raise LinkError("protocol", "The other side spoke out of turn.")
    try:
        obj = json.loads(buf)
    except ValueError:
        raise LinkError(
            "protocol", "The other side sent something that is not LayerLab's link."
        ) from None
    if not isinstance(obj, dict):
        raise LinkError("protocol", "The other side sent something that is not LayerLab's link.")
    return obj


def _versions() -> dict:
    return {"link": LINK_PROTOCOL, "layerlab": __version__, "rpc": RPC_VERSION}


def _rpc_compatible(theirs: str, ours: str = RPC_VERSION) -> bool:
    """llama.cpp's client needs the server's major equal and minor not newer than its own."""
    try:
        t_major, t_minor = (int(x) for x in str(theirs).split(".")[:2])
        o_major, o_minor = (int(x) for x in ours.split(".")[:2])
    except ValueError:
        return False
    return t_major == o_major and t_minor <= o_minor


def version_problem(worker: dict, head: dict | None = None) -> str:
    head = head or _versions()
    name = worker.get("name") or "The worker"
    return (
        f"{name} runs LayerLab {worker.get('layerlab', '?')} with link protocol "
        f"{worker.get('link', '?')} and llama.cpp RPC protocol {worker.get('rpc', '?')}; this head "
        f"needs link protocol {head.get('link')} and RPC {str(head.get('rpc')).split('.')[0]}.x. "
        "Update LayerLab on one of them so they match."
    )


# -- the worker's side --------------------------------------------------------------------------
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


# -- the head's side ----------------------------------------------------------------------
def _tcp(address: Endpoint, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except ConnectionRefusedError:
        raise LinkError(
            "unreachable",
            f"Nothing is listening on {address}: is sharing switched on at that machine?",
        ) from None
    except socket.gaierror:
        raise LinkError("unreachable", f"The name '{address.host}' does not resolve.") from None
    except OSError as e:
        raise LinkError(
            "unreachable", f"{address} cannot be reached ({e.strerror or e})."
        ) from None
    relay.tune(sock, lan=not address.is_loopback)
    sock.settimeout(timeout)
    return sock


def _unpinned_tls(address: Endpoint, timeout: float) -> ssl.SSLSocket:
    """TLS to a link without checking its certificate: only to read or pin it (pairing)."""
    sock = _tcp(address, timeout)
    try:
        return client_context(None, None).wrap_socket(sock)
    except (ssl.SSLError, OSError) as e:
        sock.close()
        raise LinkError("protocol", f"{address} does not speak LayerLab's link ({e}).") from None


def presented_fingerprint(address: Endpoint, timeout: float = HANDSHAKE_TIMEOUT_S) -> str:
    """The fingerprint of the certificate whatever answers at `address` presents."""
    tls = _unpinned_tls(address, timeout)
    with tls:
        der = tls.getpeercert(binary_form=True)
    return fingerprint_of_cert(der)


def open_link(
    identity: Identity,
    worker: Peer,
    op: str,
    timeout: float = HANDSHAKE_TIMEOUT_S,
    address: Endpoint | None = None,
    extra: dict | None = None,
) -> tuple[ssl.SSLSocket, dict]:
    """A TLS session to a paired worker with `op` accepted, or LinkError saying why not."""
    address = address or Endpoint.parse(worker.address)
    sock = _tcp(address, timeout)
    try:
        tls = client_context(identity, worker.cert_pem).wrap_socket(sock)
    except ssl.SSLCertVerificationError:
        sock.close()
        try:
            now = presented_fingerprint(address, timeout)
        except LinkError:
            now = "?" * 16
        raise LinkError(
            "key_changed",
            f"{worker.name} at {address} now shows a different key ({short_fingerprint(now)}) "
            f"from the one paired ({short_fingerprint(worker.fingerprint)}). LayerLab will not "
            "connect: if that machine was reinstalled, pair it again; if not, something else "
            "is answering at its address.",
        ) from None
    except (ssl.SSLError, OSError) as e:
        sock.close()
        if isinstance(e, TimeoutError):
            raise LinkError(
                "frozen",
                f"{worker.name} at {address} accepted the connection but "
                "did not answer: it is frozen or overloaded.",
            ) from None
        raise LinkError("protocol", f"{address} does not speak LayerLab's link ({e}).") from None
    try:
        got = fingerprint_of_cert(tls.getpeercert(binary_form=True))
        if got != worker.fingerprint:  # belt and braces: the pin is the SPKI fingerprint
            raise LinkError("key_changed", f"{worker.name} presented an unexpected key.")
        send_line(tls, {"op": op, "name": identity.name, **_versions(), **(extra or {})})
        reply = recv_line(tls)
    except (ssl.SSLError, ConnectionError) as e:
        tls.close()
        # TLS 1.3: the worker checks our certificate after our side of the handshake is done,
        # so its refusal arrives as an alert (or a close) on the first read.
        raise LinkError(
            "not_paired",
            f"{worker.name} refused this head: it no longer trusts it (was it reset or "
            f"unpaired?). Pair again with the code it shows. ({type(e).__name__})",
        ) from None
    except TimeoutError:
        tls.close()
        raise LinkError("frozen", f"{worker.name} at {address} stopped answering.") from None
    except BaseException:
        tls.close()
        raise
    if not reply.get("ok"):
        tls.close()
        kind = str(reply.get("kind", "protocol"))
        problem = str(reply.get("problem", "refused"))
        info = reply.get("worker") or {}
        if kind == "version":
            problem = version_problem({**info, "name": worker.name})
        elif kind == "busy":
            problem = f"{worker.name} is busy, serving {reply.get('serving', 'another head')}."
        raise LinkError(kind, problem, info)
    info = reply.get("worker") or {}
    if info.get("link") != LINK_PROTOCOL or not _rpc_compatible(str(info.get("rpc", ""))):
        tls.close()
        raise LinkError("version", version_problem({**info, "name": worker.name}), info)
    return tls, reply


def pair(
    identity: Identity,
    trust: TrustStore,
    address: Endpoint | str,
    code: str,
    expected_fingerprint: str | None = None,
    timeout: float = 10.0,
) -> Peer:
    """Pair with the worker at `address` using the code it shows; pin and return it."""
    address = Endpoint.parse(address, DEFAULT_LINK_PORT) if isinstance(address, str) else address
    tls = _unpinned_tls(address, timeout)
    with tls:
        worker_fp = fingerprint_of_cert(tls.getpeercert(binary_form=True))
        if expected_fingerprint and worker_fp != expected_fingerprint:
            raise LinkError(
                "key_changed",
                f"{address} shows a key ({short_fingerprint(worker_fp)})"
                " other than the one it announced; not pairing.",
            )
        attempt = HeadPairing(code, worker_fp, identity.fingerprint)
        try:
            send_line(
                tls,
                {
                    "op": "pair",
                    "name": identity.name,
                    **_versions(),
                    "cert": identity.cert_pem.decode(),
                    **attempt.start(),
                },
            )
            answer = recv_line(tls)
            if not answer.get("ok"):
                kind = str(answer.get("kind", "protocol"))
                info = answer.get("worker") or {}
                problem = (
                    version_problem(info)
                    if kind == "version"
                    else str(answer.get("problem", "refused"))
                )
                raise LinkError(kind, problem, info)
            try:
                confirmation = attempt.finish(answer)
            except PairingFailed as e:
                raise LinkError("wrong_code", str(e)) from None
            send_line(tls, confirmation)
            done = recv_line(tls)
        except (OSError, ssl.SSLError) as e:
            raise LinkError("protocol", f"The pairing with {address} broke off ({e}).") from None
        if (
            not done.get("ok")
            or fingerprint_of_cert(str(done.get("cert", "")).encode()) != worker_fp
        ):
            raise LinkError("wrong_code", "The worker did not accept the pairing code.")
        info = done.get("worker") or {}
        peer = Peer(
            worker_fp,
            str(info.get("name") or address.host)[:64],
            str(done["cert"]),
            str(address),
            time.time(),
        )
        trust.add("worker", peer)
        return peer


def worker_status(
    identity: Identity, worker: Peer, timeout: float = 3.0, address: Endpoint | None = None
) -> WorkerStatus:
    """A paired worker's status document (devices, memory, whom it serves), over the link."""
    t0 = time.perf_counter()
    tls, reply = open_link(identity, worker, "status", timeout, address=address)
    tls.close()
    doc = parse_status(reply.get("status"))
    if doc is None:
        raise LinkError("protocol", f"{worker.name} sent a status that is not a worker's.")
    return doc.model_copy(update={"link_rtt_ms": (time.perf_counter() - t0) * 1000})
