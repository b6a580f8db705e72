"""Move bytes between two connected sockets (one of them TLS) until either side ends.

This is on the per-token path: llama.cpp's RPC is a strict request/answer exchange of many
small messages, so latency per message matters more than throughput. One thread serves both
directions of a pair with poll(): only one direction is busy at a time, there is no thread
hand-off per message, and one SSL object is never used from two threads at once (OpenSSL
does not allow that). Buffers are preallocated; TLS data already decrypted and buffered
(`pending()`) is drained before waiting again, since poll() cannot see it.

The pump also measures how long the head waits on the worker (`stats['waited']`, seconds):
an exchange opens at the first request byte from the head's side ('a') after an answer,
and every answer byte from the worker's side ('b') closes it up to that moment. So the
time the worker computes and the link carries counts; the head's own compute between
exchanges does not. (Commands llama.cpp sends without awaiting an answer, such as
GRAPH_COMPUTE, stay inside the exchange their answer closes.) Two perf_counter() calls
per message, nothing per byte.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

BUF_SIZE = 1 << 20

# How long a silent peer may hold unacknowledged data before the kernel gives up on it,
# and how an idle connection notices a peer that vanished (cut cable, frozen host).
USER_TIMEOUT_MS = 8000
KEEPALIVE_IDLE_S = 4
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 4


def tune(sock: socket.socket, lan: bool = False) -> None:
    """No Nagle (many small messages), big buffers; on the LAN, notice a vanished peer."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    if lan:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
            ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
        ):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def pump(a: socket.socket, b: socket.socket, stats: dict | None = None) -> str:
    """Relay until one side closes or fails; returns why ('a closed', 'b error: ...').

    Both sockets must be blocking. The caller closes them. `stats`, if given, counts the
    bytes read from each side ('a', 'b') as they move, so a reader sees the traffic live,
    and the seconds side 'a' spent waiting on side 'b' ('waited', see the module doc).
    """
    buf = bytearray(BUF_SIZE)
    view = memoryview(buf)
    poller = select.poll()
    fa, fb = a.fileno(), b.fileno()
    poller.register(fa, select.POLLIN)
    poller.register(fb, select.POLLIN)
    names = {fa: "a", fb: "b"}
    peers = {fa: (a, b), fb: (b, a)}
    moved = stats if stats is not None else {}
    moved.update(a=0, b=0, waited=0.0)
    clock = time.perf_counter
    mark = 0.0  # the open exchange counted up to here; 0.0: none open
    answering = False  # the open exchange's answer has begun
    while True:
        for fd, _events in poller.poll():
            src, dst = peers[fd]
            if fd == fa:
                if answering or not mark:  # a new request: a new exchange
                    mark, answering = clock(), False
            elif mark:
                now = clock()
                moved["waited"] += now - mark
                mark, answering = now, True
            try:
                n = src.recv_into(buf)
                if n == 0:
                    return f"{names[fd]} closed"
                dst.sendall(view[:n])
                moved[names[fd]] += n
                if isinstance(src, ssl.SSLSocket):
                    while (p := src.pending()) > 0:
                        n = src.recv_into(buf, min(p, BUF_SIZE))
                        if n == 0:
                            return f"{names[fd]} closed"
                        dst.sendall(view[:n])
                        moved[names[fd]] += n
            except (OSError, ValueError) as e:
                return f"{names[fd]} error: {e}"


def accept_forever(
    sock: socket.socket,
    closed: threading.Event,
    handle: Callable[[socket.socket, object], None],
    name: str,
) -> None:
    """Accept connections until `closed` is set, each handled on its own daemon thread.

    A failed accept while open (EMFILE, a reset in the backlog) is retried after a pause
    instead of ending the listener.
    """
    while not closed.is_set():
        try:
            conn, addr = sock.accept()
        except OSError:
            if closed.is_set():
                return
            time.sleep(0.05)
            continue
        threading.Thread(target=handle, args=(conn, addr), name=name, daemon=True).start()
