"""One poller per watched worker: its status document feeds both the watchdog and the gauges.

Each watched worker gets a daemon thread that reads its status every `interval_s` through
`read(address, timeout)` (plain HTTP by default; `HeadLinks.read_status` for paired
workers, over the link). What it learns is one `WorkerReading`:

- "asking": nothing known yet;
- "ok": the status document answered;
- "silent": it answered before, but not for `silence_s` (frozen, SIGSTOPped, cable pulled);
- "gone": its port refuses connections (the process was killed or stopped);
- "no_status": a plain llama.cpp rpc-server: it never answered status, but its RPC port
  accepts. Never called silent (it has nothing to say), but "gone" once its port refuses.

Lost workers are still polled, so a worker that comes back (SIGCONT, restarted) goes back
to "ok" and the head can offer it again. Subscribers hear every state change and every
new document, from the poller threads: keep callbacks short, and hand Qt work to the GUI
thread.

When a read gets no answer, the poller knocks on the worker's port (a TCP connect, closed at
once): a refusal means gone. Why both waits shrink near the silence deadline: a frozen
worker's kernel still accepts the status connection, so a read waits its whole timeout, and
once the backlog is full a knock waits too. Bounding both by the time left until `silence_s`
is up makes "silent" land within silence_s + interval_s of the last answer, whatever
timeout_s is.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from layerlab.core.cluster.status import WorkerStatus, read_plain_status
from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.subscribers import Subscribers

State = Literal["asking", "ok", "silent", "gone", "no_status"]
MIN_READ_S = 0.05  # the shortest read worth trying


@dataclass(frozen=True)
class WorkerReading:
    address: str  # the address the person knows
    state: State
    status: WorkerStatus | None  # the last good document
    seen: float | None  # time.monotonic() of the last answer
    problem: str = ""  # in words when silent/gone


class _Poller:
    def __init__(self, feed: WorkerFeed, address: str):
        self.feed = feed
        self.address = address
        self.stop = threading.Event()
        self.reading = WorkerReading(address, "asking", None, None)
        self.thread = threading.Thread(target=self._run, name=f"worker-feed {address}", daemon=True)

    def _run(self) -> None:
        feed = self.feed
        while not self.stop.is_set():
            started = time.monotonic()
            self._poll()
            # Each knock is a line in a plain rpc-server's log ("Accepted client
            # connection"): ask one that has no status only as often as silence matters.
            every = feed.silence_s if self.reading.state == "no_status" else feed.interval_s
            self.stop.wait(max(0.0, max(feed.interval_s, every) - (time.monotonic() - started)))

    def _timeout(self, cap: float) -> float:
        """`cap`, or less while "ok": never wait past the moment silence is due."""
        r = self.reading
        if r.state == "ok" and r.seen is not None:
            left = r.seen + self.feed.silence_s - time.monotonic()
            return max(MIN_READ_S, min(cap, left))
        return cap

    def _poll(self) -> None:
        feed, r = self.feed, self.reading
        try:
            doc = feed.read(self.address, self._timeout(feed.timeout_s))
        except Exception:  # a reader that raises has not answered; the feed goes on
            doc = None
        if self.stop.is_set():
            return
        now = time.monotonic()
        if doc is not None:
            self._publish(WorkerReading(self.address, "ok", doc, now), new_document=True)
            return
        # A refusal comes back in one round trip; a frozen worker's full backlog never does.
        port = _knock(self.address, self._timeout(min(feed.timeout_s, 1.0)))
        if port == "refused":
            problem = f"{self.address} refuses connections: its worker is not running."
            self._publish(replace(r, state="gone", problem=problem))
        elif port == "unreachable" and r.seen is None and r.state != "no_status":
            self._publish(replace(r, state="gone", problem=f"{self.address} cannot be reached."))
        elif r.seen is None:
            # It never answered status but its port accepts (or is busy with its head):
            # a plain rpc-server. Its silence is its nature, not a fault.
            if port == "accepts" or r.state == "no_status":
                self._publish(replace(r, state="no_status", problem=""))
        elif now - r.seen >= feed.silence_s:
            self._publish(replace(r, state="silent", problem=_silent_words(self.address, r.seen)))
        # else: one missed answer inside the silence window; keep what we said

    def _publish(self, reading: WorkerReading, new_document: bool = False) -> None:
        old = self.reading
        if not new_document and reading.state == old.state:
            return
        with self.feed._lock:
            if self.stop.is_set():
                return
            self.reading = reading
        self.feed._subscribers.tell(reading)


def _silent_words(address: str, seen: float) -> str:
    return f"{address} stopped answering {time.monotonic() - seen:.1f} s ago."


def _knock(address: str, timeout: float) -> Literal["accepts", "refused", "unreachable"]:
    """Does the worker's port take a TCP connection? (Closed again at once.)"""
    try:
        ep = Endpoint.parse(address)
    except BadAddress:
        return "unreachable"
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return "accepts"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        # A full backlog (a frozen process, a plain rpc-server busy with its head) drops
        # the SYN exactly as a vanished host does: the port may still be there.
        return "unreachable"
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
            return "refused"
        return "unreachable"


class WorkerFeed:
    """Status pollers by the address the person knows. Thread-safe; no Qt."""

    def __init__(
        self,
        read: Callable[[str, float], WorkerStatus | None] = read_plain_status,
        interval_s: float = 0.5,
        silence_s: float = 3.0,
        timeout_s: float = 1.0,
    ):
        self.read = read
        self.interval_s = interval_s
        self.silence_s = silence_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pollers: dict[str, _Poller] = {}
        self._subscribers: Subscribers[WorkerReading] = Subscribers()
        self._closed = False

    def watch(self, address: str) -> None:
        """Start polling `address` (idempotent)."""
        with self._lock:
            if self._closed or address in self._pollers:
                return
            poller = self._pollers[address] = _Poller(self, address)
        poller.thread.start()

    def unwatch(self, address: str) -> None:
        """Stop polling `address`; a read in flight ends on its own timeout."""
        with self._lock:
            poller = self._pollers.pop(address, None)
        if poller is not None:
            poller.stop.set()

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._pollers)

    def reading(self, address: str) -> WorkerReading | None:
        with self._lock:
            poller = self._pollers.get(address)
        if poller is None:
            return None
        r = poller.reading
        if r.state == "silent" and r.seen is not None:
            return replace(r, problem=_silent_words(address, r.seen))  # how long, as of now
        return r

    def subscribe(self, callback: Callable[[WorkerReading], None]) -> Callable[[], None]:
        """`callback(reading)` on every state change and every new document, from poller
        threads. Returns the call that unsubscribes it."""
        return self._subscribers.add(callback)

    def close(self) -> None:
        """Stop every poller; waits briefly for reads in flight (they time out on their own)."""
        with self._lock:
            self._closed = True
            pollers, self._pollers = list(self._pollers.values()), {}
        for p in pollers:
            p.stop.set()
        deadline = time.monotonic() + self.timeout_s + 1.0
        for p in pollers:
            p.thread.join(max(0.0, deadline - time.monotonic()))
