"""llama.cpp's log, captured in the engine process and read for facts it gives nowhere else:
which device got each layer, and how many bytes each device's buffers took."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from layerlab.core.engine.events import DeviceAllocation

_LAYER = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+?),")
_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
_KV_BUF = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
_COMPUTE_BUF = re.compile(r"\s(\S+) compute buffer size =\s+([\d.]+) MiB")
_MIB = 1024 * 1024


class LlamaLog:
    """Collects llama.cpp log text (all levels, DEBUG included) and parses it on demand."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._partial = ""
        self._echo = echo

    def feed(self, text: str) -> None:
        with self._lock:
            text = self._partial + text
            *complete, self._partial = text.split("\n")
            self._lines.extend(complete)
        if self._echo:
            self._echo(text if not complete else "\n".join(complete) + "\n")

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def tail(self, n: int = 20) -> list[str]:
        with self._lock:
            return self._lines[-n:]

    def layer_devices(self) -> dict[int, str]:
        """Layer index -> llama.cpp device name ("CPU", "RPC0", "CUDA1")."""
        out: dict[int, str] = {}
        for line in self.lines:
            m = _LAYER.search(line)
            if m:
                out[int(m.group(1))] = m.group(2)
        return out

    def allocations(self) -> dict[str, dict[str, int]]:
        """Buffer name -> {weights, kv_cache, compute} bytes, as llama.cpp logged them.

        Buffer names look like "CPU", "CPU_Mapped", "RPC0[127.0.0.1:50052]"; the caller maps
        them to devices. Sizes are logged in MiB with two decimals, so they are exact to ~10 KB.
        """
        out: dict[str, dict[str, int]] = {}
        for line in self.lines:
            for rx, kind in (
                (_MODEL_BUF, "weights"),
                (_KV_BUF, "kv_cache"),
                (_COMPUTE_BUF, "compute"),
            ):
                m = rx.search(line)
                if m:
                    slot = out.setdefault(m.group(1), {"weights": 0, "kv_cache": 0, "compute": 0})
                    slot[kind] += round(float(m.group(2)) * _MIB)
                    break
        return out


def buffer_device(buffer_name: str, names: dict[str, str]) -> str:
    """Map a buffer name to a device label.

    RPC buffers are named by the device's index *on its worker* plus the endpoint
    ('RPC0[127.0.0.1:50052]'), unlike RPC devices ('RPC0', 'RPC1', ... per process), so the
    full buffer name is looked up first.
    """
    if buffer_name in names:
        return names[buffer_name]
    base = buffer_name.split("[", 1)[0]
    if base in names:
        return names[base]
    if base.startswith("CPU"):
        return "CPU"
    return names.get(base, base)


def allocations_by_device(log: LlamaLog, names: dict[str, str]) -> list[DeviceAllocation]:
    merged: dict[str, dict[str, int]] = {}
    for buf, sizes in log.allocations().items():
        dev = buffer_device(buf, names)
        slot = merged.setdefault(dev, {"weights": 0, "kv_cache": 0, "compute": 0})
        for k, v in sizes.items():
            slot[k] += v
    return [DeviceAllocation(device=d, **s) for d, s in merged.items()]
