"""Which devices this machine has: the probes' fallback chain plus llama.cpp's view.

Order matters: NVML first (the richest NVIDIA source), then amdgpu's sysfs, then whatever
sysfs says about the rest (partial), then the host. A probe sees the PCI bus ids earlier
probes claimed and skips them, so a GPU appears once, from the best source that reads it.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace

from layerlab.core.devices.amd_sysfs import AmdSysfsProbe
from layerlab.core.devices.ggml_view import LlamaView, match_llama
from layerlab.core.devices.host_probe import HostProbe
from layerlab.core.devices.model import DeviceInfo, DeviceSample, Machine
from layerlab.core.devices.nvml_probe import NvmlProbe
from layerlab.core.devices.other_sysfs import OtherSysfsProbe
from layerlab.core.devices.probe_chain import Probe, ProbeUnavailable
from layerlab.core.devices.sysfs_tree import DirTree


class SnapshotProbe:
    """Devices only llama.cpp lists: its numbers from the start, not live."""

    name = "llama.cpp"

    def __init__(self, samples: list[DeviceSample]):
        self._samples = samples

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        return []

    def sample(self) -> list[DeviceSample]:
        now = time.time()
        return [
            replace(s, time=now, problem="llama.cpp's reading at start; not live")
            for s in self._samples
        ]

    def close(self) -> None:
        pass


@dataclass
class Inventory:
    machine: Machine
    groups: list[tuple[Probe, list[str]]]  # each probe with the device keys it samples
    notes: list[str] = field(default_factory=list)  # why a probe read nothing
    llama_names: dict[str, str] = field(default_factory=dict)  # llama.cpp name -> key
    unseen_by_llama: list[str] = field(default_factory=list)
    llama_problem: str = ""

    @property
    def gpus(self) -> list[DeviceInfo]:
        return [d for d in self.machine.devices if d.kind != "cpu"]

    @property
    def cpu_only_line(self) -> str | None:
        """One line for a machine without a usable GPU, else None."""
        if self.gpus:
            return None
        why = "; ".join(self.notes) or "no GPU reported"
        return f"No GPU found ({why}): LayerLab runs on the CPU only."

    def close(self) -> None:
        for probe, _ in self.groups:
            probe.close()


def local_probes(sysfs_root: str = "/sys") -> list[Probe]:
    tree = DirTree(sysfs_root)
    return [
        NvmlProbe(),
        AmdSysfsProbe(tree, kernel=platform.release()),
        OtherSysfsProbe(tree),
        HostProbe(),
    ]


def discover(
    probes: list[Probe], llama: LlamaView | None = None, machine_name: str = "this machine"
) -> Inventory:
    devices: list[DeviceInfo] = []
    groups: list[tuple[Probe, list[str]]] = []
    notes: list[str] = []
    claimed: set[str] = set()
    for probe in probes:
        try:
            found = probe.discover(set(claimed))
        except ProbeUnavailable as e:
            if probe.name in ("NVML", "amdgpu sysfs"):  # the other links say nothing useful
                notes.append(f"{probe.name}: {e}")
            continue
        except Exception as e:  # a broken driver must not hide the other devices
            notes.append(f"{probe.name} failed: {e}")
            continue
        found = [replace(d, machine=machine_name) for d in found]
        claimed |= {d.pci_bus_id for d in found if d.pci_bus_id}
        devices += found
        groups.append((probe, [d.key for d in found]))
    inv = Inventory(Machine(machine_name, devices), groups, notes)
    if llama is not None:
        inv.llama_problem = llama.problem
        m = match_llama(devices, llama.devices, time.time())
        inv.machine.devices = [replace(d, machine=machine_name) for d in m.devices]
        inv.llama_names, inv.unseen_by_llama = m.names, m.unseen_by_llama
        if m.llama_only:
            inv.groups.append((SnapshotProbe(m.llama_only), [s.key for s in m.llama_only]))
    return inv


def sample_once(inv: Inventory) -> dict[str, DeviceSample]:
    """One synchronous reading of every device (the CLI; the GUI uses the Sampler)."""
    from layerlab.core.devices.sampler import Sampler

    sampler = Sampler(inv.groups)
    try:
        return sampler.round()
    finally:
        sampler.close(close_probes=False)
