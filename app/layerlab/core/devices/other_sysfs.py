"""Any other GPU sysfs knows about (Intel, or NVIDIA when NVML is missing): partial.

The last GPU link of the fallback chain: it gets a name from the PCI ids, the PCIe link
and hwmon readings where the driver has them, and no memory numbers. The gauge says so.
"""

from __future__ import annotations

import time

from layerlab.core.devices import drm
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.pci import VENDOR_NAMES, device_name
from layerlab.core.devices.probe_chain import ProbeUnavailable
from layerlab.core.devices.sysfs_tree import DirTree, SysfsTree

_DISPLAY_DRIVERS = {"i915", "xe", "nvidia", "nouveau", "amdgpu", "radeon"}


class OtherSysfsProbe:
    name = "sysfs"

    def __init__(self, tree: SysfsTree | None = None):
        self.tree = tree or DirTree()
        self._cards: list[tuple[str, str]] = []

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        t = self.tree
        infos, self._cards = [], []
        for c in drm.cards(t):
            if c.bus_id in claimed or c.driver not in _DISPLAY_DRIVERS:
                continue
            gen, width = drm.pcie_link(t, c.dir)
            vendor = VENDOR_NAMES.get(c.vendor, "other")
            key = f"drm:{c.bus_id or c.card}"
            infos.append(
                DeviceInfo(
                    key=key,
                    vendor=vendor,  # type: ignore[arg-type]
                    name=device_name(c.vendor, c.device, c.revision),
                    kind="igpu" if c.integrated else "gpu",
                    pci_bus_id=c.bus_id,
                    driver=c.driver,
                    pcie_gen=None if c.integrated else gen,
                    pcie_width=None if c.integrated else width,
                    partial=True,
                )
            )
            self._cards.append((key, c.dir))
        if not infos:
            raise ProbeUnavailable("no other GPU in sysfs")
        return infos

    def sample(self) -> list[DeviceSample]:
        out = []
        for key, d in self._cards:
            hw = drm.hwmon(self.tree, d)
            out.append(
                DeviceSample(
                    key=key,
                    memory_used=0,
                    memory_free=0,
                    memory_total=0,
                    temperature_c=hw.temperature_c,
                    power_w=hw.power_w,
                    time=time.time(),
                )
            )
        return out

    def close(self) -> None:
        pass
