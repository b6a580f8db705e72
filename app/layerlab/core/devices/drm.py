"""What every GPU's sysfs directory says, whatever its driver (/sys/class/drm/cardN/device).

Shared by the AMD probe and the generic one. Paths are relative to the sysfs root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from layerlab.core.devices.pci import normalise_bus_id, pcie_gen_from_speed
from layerlab.core.devices.sysfs_tree import SysfsTree

DRM = "class/drm"
_CARD = re.compile(r"^card\d+$")

# The files a recording keeps for each card (hwmon files are added per hwmon dir).
CARD_FILES = [
    "vendor",
    "device",
    "revision",
    "subsystem_vendor",
    "subsystem_device",
    "uevent",
    "boot_vga",
    "product_name",
    "current_link_speed",
    "current_link_width",
    "max_link_speed",
    "max_link_width",
    "mem_info_vram_total",
    "mem_info_vram_used",
    "mem_info_vis_vram_total",
    "mem_info_gtt_total",
    "mem_info_gtt_used",
    "gpu_busy_percent",
    "mem_busy_percent",
    "pp_dpm_mclk",
]
HWMON_FILES = [
    "name",
    "temp1_input",
    "temp1_label",
    "temp2_input",
    "temp2_label",
    "temp3_input",
    "temp3_label",
    "power1_average",
    "power1_input",
    "power1_cap",
]


@dataclass(frozen=True)
class DrmCard:
    card: str  # "card1"
    dir: str  # "class/drm/card1/device"
    vendor: int
    device: int
    revision: int | None
    bus_id: str | None
    driver: str | None

    @property
    def integrated(self) -> bool:
        # Integrated GPUs sit on bus 0 (Intel 00:02.0); AMD APUs are caught by the AMD probe.
        return bool(self.bus_id and self.bus_id.split(":")[1] == "00")


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def cards(tree: SysfsTree) -> list[DrmCard]:
    out = []
    for name in tree.list(DRM):
        if not _CARD.match(name):
            continue  # connectors (card0-DP-1) and render nodes
        d = f"{DRM}/{name}/device"
        uevent = dict(
            line.split("=", 1)
            for line in (tree.read(f"{d}/uevent") or "").splitlines()
            if "=" in line
        )
        vendor, device = _hex(tree.read(f"{d}/vendor")), _hex(tree.read(f"{d}/device"))
        if vendor is None or device is None:
            continue  # not a PCI device (virtual, platform GPUs)
        out.append(
            DrmCard(
                card=name,
                dir=d,
                vendor=vendor,
                device=device,
                revision=_hex(tree.read(f"{d}/revision")),
                bus_id=normalise_bus_id(uevent.get("PCI_SLOT_NAME")),
                driver=uevent.get("DRIVER"),
            )
        )
    return out


def pcie_link(tree: SysfsTree, d: str) -> tuple[int | None, int | None]:
    gen = pcie_gen_from_speed(tree.read(f"{d}/max_link_speed"))
    width = tree.read(f"{d}/max_link_width")
    return gen, int(width) if width and width.isdigit() else None


def read_int(tree: SysfsTree, rel: str) -> int | None:
    text = tree.read(rel)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Hwmon:
    temperature_c: float | None
    power_w: float | None
    power_cap_w: float | None


def hwmon_dirs(tree: SysfsTree, d: str) -> list[str]:
    return [f"{d}/hwmon/{h}" for h in tree.list(f"{d}/hwmon")]


def hwmon(tree: SysfsTree, d: str) -> Hwmon:
    """The edge/GPU temperature (what NVML reports too) and board power."""
    for h in hwmon_dirs(tree, d):
        temp = None
        for i in (1, 2, 3):
            label = tree.read(f"{h}/temp{i}_label")
            t = read_int(tree, f"{h}/temp{i}_input")
            if t is not None and (temp is None or label == "edge"):
                temp = t / 1000
            if label == "edge" and t is not None:
                break
        # Kernels before 6.x give power1_average; RDNA3 on newer ones only power1_input. µW.
        power = read_int(tree, f"{h}/power1_average")
        if power is None:
            power = read_int(tree, f"{h}/power1_input")
        cap = read_int(tree, f"{h}/power1_cap")
        if temp is not None or power is not None:
            return Hwmon(
                temp, power / 1e6 if power is not None else None, cap / 1e6 if cap else None
            )
    return Hwmon(None, None, None)


def record(tree: SysfsTree) -> dict[str, str]:
    """Every file the sysfs probes read, for each card, as a recording."""
    out: dict[str, str] = {}
    for name in tree.list(DRM):
        if not _CARD.match(name):
            continue
        d = f"{DRM}/{name}/device"
        for f in CARD_FILES:
            v = tree.read(f"{d}/{f}")
            if v is not None:
                out[f"{d}/{f}"] = v
        for h in hwmon_dirs(tree, d):
            for f in HWMON_FILES:
                v = tree.read(f"{h}/{f}")
                if v is not None:
                    out[f"{h}/{f}"] = v
    return out
