"""Finding workers on the LAN with mDNS / DNS-SD (the `zeroconf` package).

A sharing worker announces `_layerlab._tcp.local.` with its name, the link and RPC protocol
versions and its key fingerprint; heads browse for it. An announcement is only a hint: the
fingerprint is checked again in the TLS handshake, and pairing pins it. Typing an address
keeps working where multicast does not reach.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerlab import __version__
from layerlab.core.endpoint import Endpoint

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, ServiceStateChange, Zeroconf

# zeroconf is imported where it is first used (~70 ms): the window's start, which imports
# this module for DiscoveredWorker, does not wait for it.

SERVICE_TYPE = "_layerlab._tcp.local."


@dataclass(frozen=True)
class DiscoveredWorker:
    name: str
    address: Endpoint  # the link endpoint
    fingerprint: str
    link_protocol: int
    rpc_protocol: str
    layerlab: str
    service: str = ""  # mDNS instance name, for removal


def _interfaces(address: str | None) -> list[str] | None:
    if address and address not in ("0.0.0.0", "::", ""):
        return [address]
    return None


class Announcement:
    """This worker's mDNS announcement; close() withdraws it (a goodbye packet)."""

    def __init__(
        self, name: str, address: Endpoint, fingerprint: str, link_protocol: int, rpc_protocol: str
    ):
        from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

        self.name = name
        self.zc = Zeroconf(
            interfaces=_interfaces(address.host) or InterfaceChoice.All,
            ip_version=IPVersion.V4Only,
        )
        addrs = [address.host] if _interfaces(address.host) else _local_ipv4s()
        label = "".join(ch if ch.isalnum() or ch in "-_ " else "-" for ch in name)[:50] or "worker"
        self.info = ServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=address.port,
            properties={
                "name": name,
                "link": str(link_protocol),
                "rpc": rpc_protocol,
                "fp": fingerprint,
                "ll": __version__,
            },
            server=f"{label.replace(' ', '-')}.local.",
            addresses=[socket.inet_aton(a) for a in addrs],
        )
        self.zc.register_service(self.info, allow_name_change=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.zc.unregister_service(self.info)
        self.zc.close()


def _local_ipv4s() -> list[str]:
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not Endpoint(ip.ip, 1).is_loopback:
                out.append(ip.ip)
    return out


def _parse(info: ServiceInfo) -> DiscoveredWorker | None:
    props = {
        k.decode(errors="replace"): (v or b"").decode(errors="replace")
        for k, v in (info.properties or {}).items()
    }
    from zeroconf import IPVersion

    addrs = info.parsed_addresses(IPVersion.V4Only)
    if not addrs or not info.port:
        return None
    try:
        link = int(props.get("link", "0"))
    except ValueError:
        link = 0
    return DiscoveredWorker(
        name=props.get("name") or info.name.split(".")[0],
        address=Endpoint(addrs[0], info.port),
        fingerprint=props.get("fp", ""),
        link_protocol=link,
        rpc_protocol=props.get("rpc", ""),
        layerlab=props.get("ll", ""),
        service=info.name,
    )


class WorkerBrowser:
    """Live list of announced workers; on_change() is called from zeroconf's thread."""

    def __init__(
        self,
        on_change: Callable[[list[DiscoveredWorker]], None] | None = None,
        interfaces: list[str] | None = None,
    ):
        from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, Zeroconf

        self.on_change = on_change or (lambda workers: None)
        self._found: dict[str, DiscoveredWorker] = {}
        self._lock = threading.Lock()
        # Every interface by address: joining the group on 0.0.0.0 needs a default route,
        # which a LAN without internet access may not have.
        self.zc = Zeroconf(
            interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
        self.browser = ServiceBrowser(self.zc, SERVICE_TYPE, handlers=[self._handler])

    def _handler(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._found.pop(name, None)
        else:
            info = zeroconf.get_service_info(service_type, name, timeout=2000)
            found = _parse(info) if info else None
            if found is None:
                return
            with self._lock:
                self._found[name] = found
        self.on_change(self.workers())

    def workers(self) -> list[DiscoveredWorker]:
        with self._lock:
            return sorted(self._found.values(), key=lambda w: w.name)

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


def browse(
    seconds: float = 3.0,
    until: Callable[[list[DiscoveredWorker]], bool] | None = None,
    interfaces: list[str] | None = None,
) -> list[DiscoveredWorker]:
    """Workers announced within `seconds` (or as soon as `until(found)` holds)."""
    done = threading.Event()
    browser = WorkerBrowser(lambda ws: done.set() if until and until(ws) else None, interfaces)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not done.is_set():
            done.wait(0.05)
        return browser.workers()
    finally:
        browser.close()
