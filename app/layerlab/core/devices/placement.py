"""What the loaded model holds on each device, for the gauges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Allocation(Protocol):
    """One device's share of a loaded model, in bytes: the engine's
    `events.DeviceAllocation` has this shape. A protocol, so that devices (below the
    engine) needs no import of it."""

    @property
    def device(self) -> str: ...  # the label the person sees: "CPU", "RPC host:port"

    @property
    def weights(self) -> int: ...

    @property
    def kv_cache(self) -> int: ...

    @property
    def compute(self) -> int: ...


def memory_by_device(allocations: Iterable[Allocation]) -> dict[str, int]:
    """Bytes the loaded model holds per device label (weights + KV cache + compute), from
    the engine's `events.Placement.allocations`; devices holding nothing are left out."""
    out: dict[str, int] = {}
    for a in allocations:
        total = a.weights + a.kv_cache + a.compute
        if total:
            out[a.device] = out.get(a.device, 0) + total
    return out
