"""Ask a worker, with timeouts, whether llama.cpp can safely use it, and say why not in words.

Called right before every load and from the Workers list. Never lets llama.cpp near a
worker that would make it abort (unreachable, not a worker, wrong version) or hang
(busy with another head, frozen).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from layerlab.core.cluster import rpc_wire
from layerlab.core.cluster.status import WorkerStatus, fetch_plain_status
from layerlab.core.endpoint import Endpoint
from layerlab.core.units import format_bytes, format_ms

DEFAULT_TIMEOUT_S = 1.5  # a healthy worker answers HELLO in milliseconds, even over Wi-Fi
FOLLOW_UP_TIMEOUT_S = 0.75  # the extra questions asked of a silent port


@dataclass(frozen=True)
class RemoteDevice:
    index: int
    free: int
    total: int
    name: str = ""
    description: str = ""


@dataclass
class ProbeResult:
    endpoint: Endpoint
    ok: bool
    problem: str = ""  # the reason in the person's words, empty when ok
    # ok | unreachable | refused | not_a_worker | version | busy | frozen | bad_address
    kind: str = "ok"
    version: rpc_wire.RpcVersion | None = None
    devices: list[RemoteDevice] = field(default_factory=list)
    # what a LayerLab worker says about itself (plain llama.cpp rpc-servers have no status)
    status: WorkerStatus | None = None
    rtt_ms: float | None = None

    @property
    def summary(self) -> str:
        if not self.ok:
            return self.problem
        parts = []
        for d in self.devices:
            label = d.description or d.name or f"device {d.index}"
            parts.append(f"{label}: {format_bytes(d.free)} free of {format_bytes(d.total)}")
        rtt = f" · {format_ms(self.rtt_ms)}" if self.rtt_ms is not None else ""
        return f"ready, RPC {self.version}{rtt} · " + "; ".join(parts)


def fetch_status(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT_S) -> WorkerStatus | None:
    """A LayerLab worker's status document, or None if there is no status endpoint answering
    (or what answers is not a worker's)."""
    return fetch_plain_status(endpoint, timeout)


def probe(endpoint: Endpoint | str, timeout: float = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """Probe one worker. Bounded: at most ~2 x timeout, whatever the peer does."""
    if isinstance(endpoint, str):
        from layerlab.core.endpoint import BadAddress

        try:
            endpoint = Endpoint.parse(endpoint)
        except BadAddress as e:
            return ProbeResult(Endpoint("?", 0), False, str(e), "bad_address")
    ep = endpoint
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except ConnectionRefusedError:
        return ProbeResult(
            ep,
            False,
            f"Nothing is listening on {ep}: is the worker running on that port?",
            "refused",
        )
    except socket.gaierror:
        return ProbeResult(
            ep, False, f"The name '{ep.host}' does not resolve to an address.", "unreachable"
        )
    except (TimeoutError, OSError) as e:
        return ProbeResult(ep, False, f"{ep} cannot be reached ({_reason(e)}).", "unreachable")
    try:
        with sock:
            sock.settimeout(timeout)
            try:
                version = rpc_wire.hello(sock)
            except TimeoutError:
                return _silent(ep, timeout)
            rtt_ms = (time.perf_counter() - t0) * 1000
            if not version.compatible:
                return ProbeResult(
                    ep,
                    False,
                    f"{ep} speaks llama.cpp RPC protocol {version}; this LayerLab needs "
                    f"{rpc_wire.RPC_PROTO_MAJOR}.{rpc_wire.RPC_PROTO_MINOR}.x. "
                    "Update LayerLab (or llama.cpp's rpc-server) on one side so they match.",
                    "version",
                    version=version,
                )
            n = rpc_wire.device_count(sock)
            if n > 64:
                raise rpc_wire.WireError(f"reports {n} devices")
            devices = [RemoteDevice(i, *rpc_wire.device_memory(sock, i)) for i in range(n)]
    except (rpc_wire.WireError, ConnectionError, struct.error) as e:
        return ProbeResult(
            ep,
            False,
            f"{ep} answered, but it is not a llama.cpp RPC worker ({e}). Check the port.",
            "not_a_worker",
        )
    except TimeoutError:
        return ProbeResult(
            ep, False, f"{ep} stopped answering in the middle of the probe.", "frozen"
        )
    except OSError as e:
        return ProbeResult(ep, False, f"{ep}: {_reason(e)}.", "unreachable")
    status = fetch_status(ep, timeout)
    if status:
        devices = [
            RemoteDevice(
                d.index,
                d.free,
                d.total,
                named.name if (named := status.device(d.index)) else "",
                named.description if named else "",
            )
            for d in devices
        ]
    return ProbeResult(ep, True, version=version, devices=devices, status=status, rtt_ms=rtt_ms)


def _silent(ep: Endpoint, timeout: float) -> ProbeResult:
    """The port accepted us but the worker said nothing: busy with a head, or frozen."""
    follow_up = min(timeout, FOLLOW_UP_TIMEOUT_S)
    status = fetch_status(ep, follow_up)
    if status is None and _speaks_http(ep, follow_up):
        # A web server waits for a full request line, so our binary HELLO met silence too.
        return ProbeResult(
            ep,
            False,
            f"{ep} answered, but it is not a llama.cpp RPC worker (it is a web server). "
            "Check the port.",
            "not_a_worker",
        )
    if status is not None:
        peer = status.serving or "another head"
        return ProbeResult(
            ep,
            False,
            f"{ep} is busy serving {peer}. A worker serves one head at a time; "
            "unload the model there first.",
            "busy",
            status=status,
        )
    return ProbeResult(
        ep,
        False,
        f"{ep} accepted the connection but did not answer within {timeout:g} s: it is busy "
        "with another head, or frozen.",
        "frozen",
    )


def _speaks_http(ep: Endpoint, timeout: float) -> bool:
    """Does a fresh connection to this port answer an HTTP request? (A busy worker does not.)"""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return s.recv(5) == b"HTTP/"
    except OSError:
        return False


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "no answer: the machine may be off or a firewall drops the connection"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
