"""The head's end of the link: open a pinned session to a paired worker, pair with a new one.

`open_link` opens a TLS session to a paired worker with one request accepted (`rpc`,
`status`, `watch`) or raises LinkError saying why not in the person's words (not paired,
key changed, busy, frozen, version). `pair` runs the head's half of pairing (pairing.py)
with the code the worker shows and pins its certificate. `worker_status` reads a paired
worker's status document over the link.
"""

from __future__ import annotations

import socket
import ssl
import time

from layerlab.core.cluster import relay
from layerlab.core.cluster.identity import (
    Identity,
    Peer,
    TrustStore,
    fingerprint_of_cert,
    short_fingerprint,
)
from layerlab.core.cluster.link_protocol import (
    DEFAULT_LINK_PORT,
    HANDSHAKE_TIMEOUT_S,
    LINK_PROTOCOL,
    LinkError,
    _rpc_compatible,
    _versions,
    recv_line,
    send_line,
    version_problem,
)
from layerlab.core.cluster.link_tls import client_context
from layerlab.core.cluster.pairing import HeadPairing, PairingFailed
from layerlab.core.cluster.status import WorkerStatus, parse_status
from layerlab.core.endpoint import Endpoint


def _connect_tls(address: Endpoint, timeout: float, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS session to `address`, its handshake done. LinkError when the TCP connection
    cannot be made; the handshake's own errors (ssl.SSLError, OSError, TimeoutError) are
    raised as they come, with the socket closed.

    The TLS socket is made before it connects, not wrapped around a connected one: Python
    3.11's wrap_socket re-raises a reset that lands between the connect and the wrap (a
    worker killed just then) without closing the socket it made, which the caller cannot
    reach to close (ssl.py, SSLSocket._create: getpeername, then recv(1)).
    """
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise LinkError("unreachable", f"The name '{address.host}' does not resolve.") from None
    problem: OSError | None = None
    for family, kind, proto, _, where in infos:
        tls = context.wrap_socket(socket.socket(family, kind, proto), do_handshake_on_connect=False)
        try:
            relay.tune(tls, lan=not address.is_loopback)
            tls.settimeout(timeout)
            tls.connect(where)
        except OSError as e:
            tls.close()
            problem = e
            continue
        try:
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        return tls
    if isinstance(problem, ConnectionRefusedError):
        raise LinkError(
            "unreachable",
            f"Nothing is listening on {address}: is sharing switched on at that machine?",
        ) from None
    why = (problem.strerror or problem) if problem else "no address"
    raise LinkError("unreachable", f"{address} cannot be reached ({why}).") from None


def _unpinned_tls(address: Endpoint, timeout: float) -> ssl.SSLSocket:
    """TLS to a link without checking its certificate: only to read or pin it (pairing)."""
    try:
        return _connect_tls(address, timeout, client_context(None, None))
    except (ssl.SSLError, OSError) as e:
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
    try:
        tls = _connect_tls(address, timeout, client_context(identity, worker.cert_pem))
    except ssl.SSLCertVerificationError:
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
