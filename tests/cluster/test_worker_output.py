"""What a worker prints is for the person: heads that vanish mid-session leave no traceback,
and `layerlab worker --help` says its defaults once."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

from layerlab.core.cluster import link
from layerlab.core.cluster.identity import Peer
from layerlab.core.cluster.link_protocol import _versions
from layerlab.core.endpoint import Endpoint
from tests.cluster.conftest import REPO

ROUNDS = 20


def _reset(sock: socket.socket) -> None:
    """Close abruptly, as a head that crashed or lost its network: RST, not FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _ask_status_and_vanish(host: str, port: int) -> None:
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    _reset(s)


def test_heads_that_vanish_leave_no_traceback_plain(worker):
    host, port = worker.endpoint.split(":")
    for _ in range(ROUNDS):
        _ask_status_and_vanish(host, int(port) + 1)
    time.sleep(1.5)  # the worker builds each answer and then finds nobody to give it to
    out = worker.log.read_text()
    assert "Traceback" not in out and "BrokenPipe" not in out, out


def test_heads_that_vanish_leave_no_traceback_through_the_link(start_sharing, make_head):
    w = start_sharing("bench-box")
    head, trust = make_head()
    peer: Peer = link.pair(head, trust, w.address, w.code, w.fingerprint)
    for op in ("status", "watch", "rpc"):
        for _ in range(3):
            tls, _ = link.open_link(head, peer, op)
            if op == "rpc":
                tls.sendall(b"\x0e" + struct.pack("<Q", 24))  # half a HELLO, then gone
            _reset(tls)
    for _ in range(5):  # a status session cut before the worker could answer
        ep = Endpoint.parse(w.address)
        raw = socket.create_connection((ep.host, ep.port), timeout=2)
        tls = link.client_context(head, peer.cert_pem).wrap_socket(raw)
        link.send_line(tls, {"op": "status", "name": "desk", **_versions()})
        _reset(tls)
    time.sleep(1.5)  # watch sessions notice on their next heartbeat
    assert link.worker_status(head, peer).devices  # still serving
    out = "".join(w.text)
    assert "Traceback" not in out and "BrokenPipe" not in out, out


def test_worker_help_says_its_default_address_once():
    r = subprocess.run(
        [sys.executable, "-m", "layerlab.cli.main", "worker", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert "127.0.0.1:127.0.0.1" not in text
    assert "default 127.0.0.1:50052" in text
