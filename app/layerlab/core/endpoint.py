"""Worker addresses as the person types them ("bench-box:50052"), parsed with clear errors."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_RPC_PORT = 50052
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


class BadAddress(ValueError):
    """An address the person typed that cannot be a worker's address."""


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def status_port(self) -> int:
        """A LayerLab worker serves its status (devices, liveness) next to its RPC port."""
        return self.port + 1

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_RPC_PORT) -> Endpoint:
        raw = text.strip()
        if not raw:
            raise BadAddress("The address is empty. Type it as host:port, e.g. 192.168.1.20:50052.")
        if "://" in raw:
            raise BadAddress(
                f"'{raw}' looks like a web address. Type only host:port, e.g. 192.168.1.20:50052."
            )
        host, port_text = raw, None
        if raw.startswith("["):  # [ipv6]:port
            end = raw.find("]")
            if end < 0:
                raise BadAddress(f"'{raw}' has an opening '[' without a closing ']'.")
            host, rest = raw[1:end], raw[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise BadAddress(f"'{raw}': expected ':port' after ']'.")
                port_text = rest[1:]
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        elif raw.count(":") > 1:
            host = raw  # a bare IPv6 address
        if port_text is None:
            port = default_port
        else:
            if not port_text.isdigit():
                raise BadAddress(f"'{raw}': the port '{port_text}' is not a number.")
            port = int(port_text)
            if not 1 <= port <= 65535:
                raise BadAddress(f"'{raw}': the port {port} is outside 1-65535.")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise BadAddress(
                    f"'{raw}': '{host}' is not a valid host name or IP address."
                ) from None
        return cls(host, port)
