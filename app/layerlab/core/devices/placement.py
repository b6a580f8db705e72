"""What the loaded model holds on each device, for the gauges."""

from __future__ import annotations

from collections.abc import Iterable

from layerlab.core.engine.events import DeviceAllocation


def memory_by_device(allocations: Iterable[DeviceAllocation]) -> dict[str, int]:
    """Bytes the loaded model holds per device label (weights + KV cache + compute), from
    the engine's `events.Placement.allocations`; devices holding nothing are left out."""
    out: dict[str, int] = {}
    for a in allocations:
        total = a.weights + a.kv_cache + a.compute
        if total:
            out[a.device] = out.get(a.device, 0) + total
    return out
