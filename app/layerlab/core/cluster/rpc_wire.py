"""Just enough of ggml's RPC wire protocol (v7) to ask a worker who it is, in pure Python.

llama.cpp's own client has no timeouts and calls abort() on any surprise (FACTS.md), so
every worker is asked these questions here, with timeouts, before llama.cpp may touch it.
Wire format, little-endian and packed: request `u8 cmd | u64 size | payload`,
response `u64 size | payload`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

RPC_PROTO_MAJOR = 7
RPC_PROTO_MINOR = 0

CMD_GET_ALIGNMENT = 1
CMD_GET_MAX_SIZE = 2
CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15

CONN_CAPS_SIZE = 24
HELLO_RESPONSE_SIZE = 4 + CONN_CAPS_SIZE


class WireError(Exception):
    """The peer answered, but not as a ggml RPC server of a version we can use."""


@dataclass(frozen=True)
class RpcVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def compatible(self) -> bool:
        # llama.cpp's client requires the same major and a minor no newer than its own.
        return self.major == RPC_PROTO_MAJOR and self.minor <= RPC_PROTO_MINOR


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError("the connection closed in the middle of an answer")
        buf += chunk
    return bytes(buf)


def command(sock: socket.socket, cmd: int, payload: bytes = b"", max_answer: int = 64) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size > max_answer:
        # Not a ggml RPC server: it answered with something that decodes to a huge length.
        raise WireError(f"answer of {size} bytes to command {cmd} is not ggml RPC")
    return _recv_exact(sock, size)


def hello(sock: socket.socket) -> RpcVersion:
    answer = command(sock, CMD_HELLO, bytes(CONN_CAPS_SIZE))
    if len(answer) != HELLO_RESPONSE_SIZE:
        raise WireError(f"HELLO answer has {len(answer)} bytes, expected {HELLO_RESPONSE_SIZE}")
    return RpcVersion(answer[0], answer[1], answer[2])


def device_count(sock: socket.socket) -> int:
    answer = command(sock, CMD_DEVICE_COUNT)
    if len(answer) != 4:
        raise WireError("DEVICE_COUNT answer is not 4 bytes")
    return struct.unpack("<I", answer)[0]


def device_memory(sock: socket.socket, device: int) -> tuple[int, int]:
    """(free, total) bytes of one of the worker's devices."""
    answer = command(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", device))
    if len(answer) != 16:
        raise WireError("GET_DEVICE_MEMORY answer is not 16 bytes")
    free, total = struct.unpack("<QQ", answer)
    return free, total
