"""Per-device layer text for the gauges: 'layers 10-29 + output'."""

from __future__ import annotations

from collections.abc import Iterable

from layerlab.core.engine.events import DeviceAllocation


def placement_by_device(layer_devices: list[str]) -> dict[str, str]:
    """layer_devices: the device of each block, then the output (events.Placement)."""
    if not layer_devices:
        return {}
    n_layer = len(layer_devices) - 1
    spans: dict[str, list[list[int]]] = {}
    for il, dev in enumerate(layer_devices[:n_layer]):
        s = spans.setdefault(dev, [])
        if s and s[-1][1] == il - 1:
            s[-1][1] = il
        else:
            s.append([il, il])
    out: dict[str, str] = {}
    for dev, ss in spans.items():
        text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ss)
        single = len(ss) == 1 and ss[0][0] == ss[0][1]
        out[dev] = ("layer " if single else "layers ") + text
    out_dev = layer_devices[-1]
    out[out_dev] = f"{out[out_dev]} + output" if out_dev in out else "output"
    return out


def memory_by_device(allocations: Iterable[DeviceAllocation]) -> dict[str, int]:
    """Bytes the loaded model holds per device label (weights + KV cache + compute), from
    the engine's `events.Placement.allocations`; devices holding nothing are left out."""
    out: dict[str, int] = {}
    for a in allocations:
        total = a.weights + a.kv_cache + a.compute
        if total:
            out[a.device] = out.get(a.device, 0) + total
    return out
