"""`layerlab worker --share`: the LAN link, the pairing code and the mDNS announcement.

The worker's llama.cpp RPC server and status endpoint stay on loopback; this adds the one
LAN-facing port (link_server.py) and announces it. What the person must see (the pairing code,
who paired, whom the worker serves) goes to `out` as text, or as JSON lines for the GUI's
share switch (`--json-events`).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from layerlab.core.cluster import rpc_wire
from layerlab.core.cluster.identity import (
    TrustStore,
    default_state_dir,
    load_or_create_identity,
    short_fingerprint,
)
from layerlab.core.cluster.link_protocol import LINK_PROTOCOL, RPC_VERSION
from layerlab.core.cluster.link_server import LinkServer
from layerlab.core.cluster.status import WorkerStatus
from layerlab.core.endpoint import Endpoint


@dataclass
class ShareOptions:
    address: Endpoint  # where the LAN link listens, e.g. 0.0.0.0:50050
    state_dir: Path | None = None  # identity + trust store; None: the user config dir
    name: str | None = None  # how heads see this worker; default: the host name
    announce: bool = True
    json_events: bool = False


def rpc_server_version(rpc: Endpoint, timeout: float = 2.0) -> str:
    """Ask our own loopback RPC server its protocol version (once, before any head)."""
    with socket.create_connection((rpc.host, rpc.port), timeout=timeout) as s:
        s.settimeout(timeout)
        v = rpc_wire.hello(s)
    return str(v)


class Sharing:
    def __init__(
        self,
        opts: ShareOptions,
        rpc: Endpoint,
        status: Callable[[], WorkerStatus],
        out: TextIO = sys.stdout,
    ):
        self.opts = opts
        self.out = out
        self._out_lock = threading.Lock()
        state_dir = opts.state_dir or default_state_dir()
        self.identity = load_or_create_identity(Path(state_dir), opts.name or socket.gethostname())
        self.trust = TrustStore(Path(state_dir))
        self.server = LinkServer(
            self.identity,
            self.trust,
            opts.address,
            rpc,
            status=lambda: status().model_copy(update={"link": asdict(self.server.counters)}),
            on_event=self.emit,
            rpc_version=rpc_server_version(rpc),
        )
        self.announcement = None

    def start(self) -> None:
        listen = self.server.start()
        fp = self.identity.fingerprint
        self.emit(
            {
                "event": "sharing",
                "address": str(listen),
                "name": self.identity.name,
                "fingerprint": fp,
                "link": LINK_PROTOCOL,
                "rpc": RPC_VERSION,
                "paired_heads": len(self.trust.heads()),
            }
        )
        self.emit({"event": "pairing_code", "code": self.server.code.code})
        if self.opts.announce:
            from layerlab.core.cluster.discovery import Announcement

            self.announcement = Announcement(
                self.identity.name, listen, fp, LINK_PROTOCOL, self.server.rpc_version
            )
            self.emit({"event": "announced", "service": self.announcement.info.name})

    def close(self) -> None:
        if self.announcement is not None:
            self.announcement.close()
        self.server.close()

    def emit(self, event: dict) -> None:
        with self._out_lock:
            if self.opts.json_events:
                self.out.write(json.dumps(event) + "\n")
            else:
                self.out.write(_words(event) + "\n")
            self.out.flush()


def _words(e: dict) -> str:
    kind = e.get("event")
    if kind == "sharing":
        return (
            f"Sharing on {e['address']} as {e['name']} (key {short_fingerprint(e['fingerprint'])}"
            f"; {e['paired_heads']} paired head(s)). Only paired heads get in."
        )
    if kind == "pairing_code":
        return f"Pairing code: {e['code']}  (type it on the head to pair; used once)"
    if kind == "announced":
        return "Announced on the LAN (mDNS)."
    if kind == "paired":
        return f"Paired with head {e['head']}."
    if kind == "pairing_failed":
        return f"A pairing attempt from {e['peer']} used a wrong code."
    if kind == "serving":
        return f"Serving {e['head']}."
    if kind == "idle":
        return f"{e['head']} disconnected; ready for the next head."
    if kind == "refused":
        return f"Refused a connection from {e['peer']} ({e['why']})."
    return json.dumps(e)
