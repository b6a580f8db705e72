"""AMD GPUs through amdgpu's sysfs files (no ROCm needed).

amdgpu exposes VRAM (mem_info_vram_total/used), busy percent, hwmon temperature and power,
and the memory clock levels (pp_dpm_mclk). It does not expose the memory bus width, so the
peak bandwidth stays unknown here rather than guessed.
"""

from __future__ import annotations

import re
import time

from layerlab.core.devices import drm
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.pci import VENDOR_AMD, device_name
from layerlab.core.devices.probe_chain import ProbeUnavailable, stale
from layerlab.core.devices.sysfs_tree import DirTree, SysfsTree

_MCLK = re.compile(r"^\d+:\s*(\d+)\s*Mhz", re.IGNORECASE | re.MULTILINE)
# APUs carve out a small VRAM window from system RAM (512 MiB - 2 GiB by BIOS setting).
_APU_CARVE_OUT = 2 * 1024**3


def max_memory_clock(text: str | None) -> int | None:
    """pp_dpm_mclk '0: 96Mhz\\n...\\n3: 1249Mhz *' -> 1249."""
    clocks = [int(m) for m in _MCLK.findall(text or "")]
    return max(clocks) if clocks else None


class AmdSysfsProbe:
    name = "amdgpu sysfs"

    def __init__(self, tree: SysfsTree | None = None, kernel: str | None = None):
        self.tree = tree or DirTree()
        self.kernel = kernel
        self._cards: list[tuple[str, str]] = []  # (key, device dir)

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        t = self.tree
        infos, self._cards = [], []
        for c in drm.cards(t):
            if c.vendor != VENDOR_AMD or c.driver != "amdgpu" or c.bus_id in claimed:
                continue
            total = drm.read_int(t, f"{c.dir}/mem_info_vram_total")
            if total is None:
                continue
            gen, width = drm.pcie_link(t, c.dir)
            hw = drm.hwmon(t, c.dir)
            key = f"drm:{c.bus_id or c.card}"
            igpu = total <= _APU_CARVE_OUT
            if igpu:
                gen = width = None  # an APU's "link" is on-die; sysfs numbers mean nothing
            infos.append(
                DeviceInfo(
                    key=key,
                    vendor="amd",
                    name=t.read(f"{c.dir}/product_name")
                    or device_name(c.vendor, c.device, c.revision),
                    kind="igpu" if igpu else "gpu",
                    pci_bus_id=c.bus_id,
                    memory_total=total,
                    driver=f"amdgpu (Linux {self.kernel})" if self.kernel else "amdgpu",
                    pcie_gen=gen,
                    pcie_width=width,
                    memory_clock_mhz=max_memory_clock(t.read(f"{c.dir}/pp_dpm_mclk")),
                    power_limit_w=hw.power_cap_w,
                )
            )
            self._cards.append((key, c.dir))
        if not infos:
            raise ProbeUnavailable("no AMD GPU with the amdgpu driver")
        return infos

    def sample(self) -> list[DeviceSample]:
        t, out = self.tree, []
        for key, d in self._cards:
            now = time.time()
            total = drm.read_int(t, f"{d}/mem_info_vram_total")
            used = drm.read_int(t, f"{d}/mem_info_vram_used")
            if total is None or used is None:
                out.append(stale(key, "amdgpu stopped reporting memory (device gone?)", now))
                continue
            busy = drm.read_int(t, f"{d}/gpu_busy_percent")
            hw = drm.hwmon(t, d)
            out.append(
                DeviceSample(
                    key=key,
                    memory_used=used,
                    memory_free=max(0, total - used),
                    memory_total=total,
                    utilization=float(busy) if busy is not None else None,
                    temperature_c=hw.temperature_c,
                    power_w=hw.power_w,
                    time=now,
                )
            )
        return out

    def close(self) -> None:
        pass
