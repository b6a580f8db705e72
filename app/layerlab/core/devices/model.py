"""The plain data every probe returns and every consumer (gauges, planner) reads.

Shared contract between the Devices panel and the planner: fields may be added (with
defaults), never renamed. Memory in integer bytes; None where the hardware does not say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Vendor = Literal["nvidia", "amd", "intel", "apple", "cpu", "other"]


@dataclass(frozen=True)
class DeviceInfo:
    """What does not change while the machine runs."""

    key: str  # stable id: "nvml:<uuid>", "drm:<pci bus id>", "host", "rpc:<host:port>#<i>"
    vendor: Vendor
    name: str  # "NVIDIA GeForce RTX 3090", "AMD Radeon RX 7900 XTX", "Host RAM (AMD EPYC)"
    kind: Literal["gpu", "igpu", "cpu"] = "gpu"
    machine: str = "this machine"  # or the worker's "host:port"
    pci_bus_id: str | None = None  # lower-case "0000:01:00.0"
    memory_total: int = 0
    memory_bandwidth: int | None = None  # peak bytes/s (memory clock x bus width)
    driver: str | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    llama_name: str | None = None  # llama.cpp's device name once matched ("CUDA0", "RPC0")
    partial: bool = False  # True when the probe could read only part of this (Intel, other)
    # Added for the Devices panel (tooltips); None where the hardware does not say.
    memory_clock_mhz: int | None = None  # peak memory clock as the driver reports it
    memory_bus_width: int | None = None  # bits
    power_limit_w: float | None = None
    llama_description: str | None = None  # llama.cpp's description of the matched device

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DeviceSample:
    """One reading of the live numbers."""

    key: str
    memory_used: int
    memory_free: int
    memory_total: int
    utilization: float | None = None  # percent
    temperature_c: float | None = None
    power_w: float | None = None
    time: float = 0.0  # time.time() of the reading
    stale: bool = False  # the probe failed; numbers are the last good ones
    problem: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def readings(self) -> list[str]:
        """The live readings the hardware gave, as a person reads them: '63 %', '71 °C'."""
        out = []
        if self.utilization is not None:
            out.append(f"{self.utilization:.0f} %")
        if self.temperature_c is not None:
            out.append(f"{self.temperature_c:.0f} °C")
        if self.power_w is not None:
            out.append(f"{self.power_w:.0f} W")
        return out


@dataclass
class Machine:
    """A machine's devices: this one, a worker, or a recorded rig."""

    name: str
    devices: list[DeviceInfo] = field(default_factory=list)
    samples: dict[str, DeviceSample] = field(default_factory=dict)
