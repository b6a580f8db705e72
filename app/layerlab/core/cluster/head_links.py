"""The head's links to its paired workers: one forwarder and one heartbeat watch each.

A paired worker is known to the person by its LAN link address ("10.0.0.5:50050", the
address it announced and was paired at) or its name ("bench-box"). llama.cpp's RPC client
cannot speak the link, so the head process (the window or `layerlab serve`, never the
engine) keeps a `LinkForwarder` per paired worker it uses: a loopback port that carries
RPC bytes over TLS. Links outlive engines: a reload, or an engine that died, reuses them.

`HeadLinks` is what the supervisor routes through (`EngineSupervisor.use_routes`): plans,
states, `Failed.lost_workers` and messages keep the person's address; only the plan the
engine process reads names the forwarder. Its `WorkerWatch` heartbeats tell the supervisor
of a lost worker at once (`worker_lost`), instead of after llama.cpp aborted and every
worker was probed.

Per link it keeps what the Workers list shows: state, the problem in words, round-trip
time (the kernel's smoothed TCP RTT of a status session), and the throughput measured
while the link carried bulk data (a model load), which is known after the first load, and
during and after an answer the time per generated token spent waiting on the worker
(`answer_waits()`, core/cluster/token_waits.py).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from layerlab.core.cluster.forwarder import LinkForwarder, WatchState, WorkerWatch
from layerlab.core.cluster.identity import (
    TRUST_FILE,
    Identity,
    Peer,
    TrustStore,
    default_state_dir,
    load_or_create_identity,
)
from layerlab.core.cluster.link_client import open_link, pair, worker_status
from layerlab.core.cluster.link_protocol import DEFAULT_LINK_PORT, LinkError
from layerlab.core.cluster.status import WorkerStatus, read_plain_status
from layerlab.core.cluster.token_waits import AnswerWaits, TokenWait
from layerlab.core.cluster.worker_check import ProbeResult, probe
from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.units import format_ms

SAMPLE_S = 0.25  # how often forwarders' byte counters are read
BULK_BYTES = 1 << 20  # a sample window moving at least this much measures throughput


@dataclass(frozen=True)
class LinkInfo:
    """What the person sees about one paired worker's link."""

    address: str  # the LAN link address the person knows
    name: str
    fingerprint: str
    endpoint: str | None = None  # the local forwarder, while the link is open
    state: str = "closed"  # closed | connecting | ok | lost
    problem: str = ""  # why it is lost or refused, in words
    kind: str = ""  # stopped | silent | a LinkError kind
    rtt_ms: float | None = None
    throughput_bps: float | None = None  # bytes per second, to the worker
    wait: TokenWait | None = None  # the last (or current) answer's wait per token on it

    @property
    def summary(self) -> str:
        """'link ok · RTT 0.4 ms · 410 MB/s · waits 3.1 ms/token' (what is known)."""
        parts = [f"link {self.state}" if self.state != "ok" else "link ok"]
        if self.rtt_ms is not None:
            parts.append(f"RTT {format_ms(self.rtt_ms)}")
        if self.throughput_bps:
            parts.append(f"{_rate(self.throughput_bps)}")
        if self.wait is not None:
            parts.append(self.wait.text)
        return " · ".join(parts)


def _rate(bps: float) -> str:
    if bps >= 1e9:
        return f"{bps / 1e9:.2f} GB/s"
    if bps >= 1e6:
        return f"{bps / 1e6:.0f} MB/s"
    return f"{bps / 1e3:.0f} kB/s"


def tcp_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's smoothed round-trip time of a connected TCP socket (Linux), or None."""
    if not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 72:
        return None
    # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_rtt (microseconds) is the 16th.
    (rtt_us,) = struct.unpack_from("=I", info, 68)
    return rtt_us / 1000.0


class _Link:
    def __init__(self, peer: Peer, forwarder: LinkForwarder):
        self.peer = peer
        self.forwarder = forwarder
        self.watch: WorkerWatch | None = None
        self.state = WatchState("connecting", since=time.monotonic())
        self.rtt_ms: float | None = None
        self.rates: collections.deque[float] = collections.deque(maxlen=16)
        self.last_sample = (time.monotonic(), 0)
        self.wait: TokenWait | None = None


class HeadLinks:
    """Links to paired workers, by the address the person knows. Thread-safe; no Qt.

    `on_change(address)` is called (from worker threads) whenever a link's state or
    numbers change; `subscribe_lost(cb)` adds `cb(address, problem)` for lost workers.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        name: str | None = None,
        on_change: Callable[[str], None] | None = None,
        watch_retry_s: float = 1.0,
    ):
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self._name = name
        self.on_change = on_change or (lambda address: None)
        self.watch_retry_s = watch_retry_s
        self._identity: Identity | None = None
        self._trust: TrustStore | None = None
        self._links: dict[str, _Link] = {}
        self._lost_subscribers: list[Callable[[str, str], object]] = []
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._sampler: threading.Thread | None = None

    # -- who we are, whom we trust (made on first use: nothing is written until then) -----
    @property
    def identity(self) -> Identity:
        with self._lock:
            if self._identity is None:
                self._identity = load_or_create_identity(self.state_dir, self._name)
            return self._identity

    @property
    def trust(self) -> TrustStore:
        with self._lock:
            if self._trust is None:
                self._trust = TrustStore(self.state_dir)
            return self._trust

    def paired(self) -> list[Peer]:
        if self._trust is None and not (self.state_dir / TRUST_FILE).exists():
            return []
        return self.trust.workers()

    def peer_for(self, text: str) -> Peer | None:
        """The paired worker named `text`: its name, or its link address (port optional)."""
        text = text.strip()
        peers = self.paired()
        for p in peers:
            if p.name.lower() == text.lower() or p.address == text:
                return p
        try:
            ep = str(Endpoint.parse(text, DEFAULT_LINK_PORT))
        except BadAddress:
            return None
        return next((p for p in peers if p.address == ep), None)

    def is_paired(self, address: str) -> bool:
        return self.peer_for(address) is not None

    def pair(self, address: str, code: str, fingerprint: str | None = None) -> Peer:
        """Pair with the worker at `address` (it shows `code`). Blocks ~0.1-1 s: not on a GUI
        thread. A re-pair replaces the old link."""
        peer = pair(self.identity, self.trust, address, code, fingerprint)
        self.close(peer.address)
        self.on_change(peer.address)
        return peer

    def unpair(self, address: str) -> None:
        peer = self.peer_for(address)
        if peer is not None:
            self.close(peer.address)
            self.trust.remove("worker", peer.fingerprint)

    # -- links ----------------------------------------------------------------------------
    def open(self, address: str) -> str:
        """The local forwarder endpoint for a paired worker, opening its link if needed."""
        peer = self.peer_for(address)
        if peer is None:
            raise LookupError(f"{address} is not a paired worker.")
        with self._lock:
            link = self._links.get(peer.address)
            if link is not None and link.peer.fingerprint != peer.fingerprint:
                self._close_link(self._links.pop(peer.address))  # re-paired: new key
                link = None
            if link is None:
                link = _Link(peer, LinkForwarder(self.identity, peer).start())
                self._links[peer.address] = link
                link.watch = WorkerWatch(
                    self.identity,
                    peer,
                    lambda st, a=peer.address: self._on_watch(a, st),
                    retry_s=self.watch_retry_s,
                ).start()
                self._start_sampler()
            return link.forwarder.endpoint

    def engine_endpoint(self, address: str) -> str:
        """Where llama.cpp must connect for `address`: the forwarder if paired, else itself."""
        return self.open(address) if self.is_paired(address) else address

    def address_of(self, text: str) -> str:
        """The address the person knows for `text` (a paired worker's name -> its address)."""
        peer = self.peer_for(text)
        return peer.address if peer else text

    def close(self, address: str) -> None:
        """Close a worker's link (a model still using it loses that worker)."""
        peer = self.peer_for(address)
        key = peer.address if peer else address
        with self._lock:
            link = self._links.pop(key, None)
        if link is not None:
            self._close_link(link)
            self.on_change(key)

    def close_all(self) -> None:
        with self._lock:
            self._closed.set()
            self._sampler = None
            links, self._links = list(self._links.values()), {}
        for link in links:
            self._close_link(link)

    @staticmethod
    def _close_link(link: _Link) -> None:
        if link.watch is not None:
            link.watch.stop()
        link.forwarder.close()

    def open_addresses(self) -> list[str]:
        with self._lock:
            return list(self._links)

    # -- what the supervisor asks (core/engine/supervisor.py WorkerRoutes) ----------------
    def problem(self, address: str) -> str:
        peer = self.peer_for(address)
        with self._lock:
            link = self._links.get(peer.address) if peer else None
        if link is None:
            return ""
        last: LinkError | None = link.forwarder.last_problem
        if last is not None:
            return last.problem
        return link.state.problem if link.state.state == "lost" else ""

    def label(self, address: str) -> str:
        peer = self.peer_for(address)
        return f"{peer.name} ({peer.address})" if peer else address

    def subscribe_lost(self, callback: Callable[[str, str], object]) -> None:
        with self._lock:
            self._lost_subscribers.append(callback)

    def attach(self, supervisor) -> None:
        """Route `supervisor`'s loads through these links and tell it of lost workers."""
        supervisor.use_routes(self)
        self.subscribe_lost(supervisor.worker_lost)

    def _on_watch(self, address: str, state: WatchState) -> None:
        with self._lock:
            link = self._links.get(address)
            if link is None:
                return
            link.state = state
            subscribers = list(self._lost_subscribers) if state.state == "lost" else []
        for cb in subscribers:
            with contextlib.suppress(Exception):
                cb(address, state.problem)
        self.on_change(address)

    # -- numbers ----------------------------------------------------------------------------
    def info(self, address: str) -> LinkInfo | None:
        peer = self.peer_for(address)
        if peer is None:
            return None
        with self._lock:
            link = self._links.get(peer.address)
        base = LinkInfo(peer.address, peer.name, peer.fingerprint)
        if link is None:
            return base
        st = link.state
        return replace(
            base,
            endpoint=link.forwarder.endpoint,
            state=st.state,
            problem=self.problem(peer.address),
            kind=st.kind if st.state == "lost" else "",
            rtt_ms=link.rtt_ms,
            throughput_bps=max(link.rates) if link.rates else None,
            wait=link.wait,
        )

    # -- waiting per token ------------------------------------------------------------------
    def waited_s(self) -> dict[str, float]:
        """Seconds llama.cpp has waited on each open link's worker so far (cumulative)."""
        with self._lock:
            links = list(self._links.items())
        return {address: link.forwarder.waited_s for address, link in links}

    def answer_waits(self) -> AnswerWaits:
        """A clock for one answer: feed it the stream's pieces and its final timings; the
        per-worker wait per token lands in `info(address).wait` (on_change tells)."""
        return AnswerWaits(self.waited_s, self._show_waits)

    def _show_waits(self, waits: dict[str, TokenWait]) -> None:
        with self._lock:
            changed = []
            for address, link in self._links.items():
                wait = waits.get(address)
                # A worker a finished answer did not wait on is not in the loaded model:
                # its old number belonged to another model.
                clear = wait is None and all(w.final for w in waits.values())
                if (wait is not None or clear) and wait != link.wait:
                    link.wait = wait
                    changed.append(address)
        for address in changed:
            self.on_change(address)

    def read_status(self, address: str, timeout: float) -> WorkerStatus | None:
        """The worker's status document by the person's address, or None if it does not
        answer: a paired worker's over its link's status session (a sharing worker serves
        nothing at port + 1 on the LAN), a plain one's over HTTP at port + 1. Blocks; this
        is the `read` of a WorkerFeed."""
        peer = self.peer_for(address)
        if peer is None:
            return read_plain_status(address, timeout)
        try:
            return worker_status(self.identity, peer, timeout)
        except LinkError:
            return None

    def measure_rtt(self, address: str, timeout: float = 3.0) -> float | None:
        """Open a status session to the worker and read the kernel's RTT of it. Blocks."""
        peer = self.peer_for(address)
        if peer is None:
            return None
        try:
            tls, _ = open_link(self.identity, peer, "status", timeout)
        except LinkError:
            return None
        with tls:
            rtt = tcp_rtt_ms(tls)
        with self._lock:
            link = self._links.get(peer.address)
            if link is not None and rtt is not None:
                link.rtt_ms = rtt
        self.on_change(peer.address)
        return rtt

    def probe(self, address: str, timeout: float = 1.5) -> ProbeResult:
        """Probe a worker by the person's address; a paired one through its link. Blocks."""
        if not self.is_paired(address):
            return probe(address, timeout)
        peer = self.peer_for(address)
        assert peer is not None
        try:
            endpoint = self.open(peer.address)
        except (OSError, LookupError) as e:
            return ProbeResult(Endpoint.parse(peer.address), False, str(e), "unreachable")
        result = probe(endpoint, timeout)
        result = replace(result, endpoint=Endpoint.parse(peer.address))
        if not result.ok and (problem := self.problem(peer.address)):
            result = replace(result, problem=problem)
        if result.ok:
            rtt = self.measure_rtt(peer.address, timeout)
            if rtt is not None:
                result = replace(result, rtt_ms=rtt)
        return result

    def _start_sampler(self) -> None:
        with self._lock:
            self._closed.clear()
            if self._sampler is None:
                self._sampler = threading.Thread(
                    target=self._sample, name="link-rates", daemon=True
                )
                self._sampler.start()

    def _sample(self) -> None:
        """Runs while any link is open; the rate of each window that moved bulk data."""
        while not self._closed.wait(SAMPLE_S):
            with self._lock:
                links = list(self._links.items())
                if not links:
                    self._sampler = None
                    return
            for address, link in links:
                now, sent = time.monotonic(), link.forwarder.bytes_carried[0]
                t0, sent0 = link.last_sample
                link.last_sample = (now, sent)
                if sent - sent0 >= BULK_BYTES and now > t0:
                    link.rates.append((sent - sent0) / (now - t0))
                    self.on_change(address)
