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

The link is split along its jobs; this module names the whole and keeps the names callers
use importable from one place:

- link_tls.py: the TLS contexts (pinning both ways);
- link_protocol.py: the JSON line exchange, versions, LinkError;
- link_server.py: the worker's LAN endpoint (LinkServer);
- link_client.py: the head's side (open_link, pair, worker_status);
- pairing.py: the pairing code and SPAKE2 message logic both sides run inside TLS.
"""

from __future__ import annotations

from layerlab.core.cluster.link_client import (
    open_link,
    pair,
    presented_fingerprint,
    worker_status,
)
from layerlab.core.cluster.link_protocol import (
    DEFAULT_LINK_PORT,
    HANDSHAKE_TIMEOUT_S,
    HEARTBEAT_S,
    LINK_PROTOCOL,
    MAX_LINE,
    RPC_VERSION,
    LinkError,
    recv_line,
    send_line,
    version_problem,
)
from layerlab.core.cluster.link_server import LinkCounters, LinkServer
from layerlab.core.cluster.link_tls import client_context, server_context

__all__ = [
    "DEFAULT_LINK_PORT",
    "HANDSHAKE_TIMEOUT_S",
    "HEARTBEAT_S",
    "LINK_PROTOCOL",
    "MAX_LINE",
    "RPC_VERSION",
    "LinkCounters",
    "LinkError",
    "LinkServer",
    "client_context",
    "open_link",
    "pair",
    "presented_fingerprint",
    "recv_line",
    "send_line",
    "server_context",
    "version_problem",
    "worker_status",
]
