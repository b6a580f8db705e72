"""The link's line protocol: one JSON line each way, its versions and its errors.

After the TLS handshake the head sends one JSON line, the request: `op` is `pair`,
`status`, `watch` (a heartbeat every HEARTBEAT_S, so a head notices a frozen or cut-off
worker), or `rpc`, with the versions it speaks. The worker answers one JSON line; after an
accepted `rpc` the session carries llama.cpp's RPC bytes unchanged (relay.py).
"""

from __future__ import annotations

import json
import socket

from layerlab import __version__
from layerlab.core.cluster import rpc_wire

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
