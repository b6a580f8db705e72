"""PCI bus ids and names: every probe spells a bus id differently, matching needs one form.

NVML says "00000000:01:00.0", CUDA's ggml backend "0000:01:00.0", Vulkan's the same in
lower case, sysfs "0000:03:00.0" and some tools "01:00.0". We compare them as numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

_BUS_ID = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})"
    r"(?:\.(?P<fn>[0-7]))?$"
)

VENDOR_NVIDIA = 0x10DE
VENDOR_AMD = 0x1002
VENDOR_INTEL = 0x8086
VENDOR_NAMES = {VENDOR_NVIDIA: "nvidia", VENDOR_AMD: "amd", VENDOR_INTEL: "intel"}


def normalise_bus_id(text: str | None) -> str | None:
    """'00000000:01:00.0' / '0000:01:00.0' / '01:00.0' -> '0000:01:00.0'; None if not one."""
    if not text:
        return None
    m = _BUS_ID.match(text.strip())
    if not m:
        return None
    domain = int(m["domain"] or "0", 16)
    fn = int(m["fn"] or "0")
    return f"{domain:04x}:{int(m['bus'], 16):02x}:{int(m['dev'], 16):02x}.{fn:x}"


# Names sysfs cannot give (it knows only ids). Checked against AMD's amdgpu.ids / pci.ids;
# the revision tells apart cards that share a chip (7900 XTX = 744C rev C8, XT = CC).
_KNOWN: dict[tuple[int, int, int | None], str] = {
    (VENDOR_AMD, 0x744C, 0xC8): "AMD Radeon RX 7900 XTX",
    (VENDOR_AMD, 0x744C, 0xCC): "AMD Radeon RX 7900 XT",
    (VENDOR_AMD, 0x744C, 0xCE): "AMD Radeon RX 7900 GRE",
    (VENDOR_AMD, 0x7480, 0xC0): "AMD Radeon RX 7600",
    (VENDOR_AMD, 0x73BF, 0xC0): "AMD Radeon RX 6900 XT",
    (VENDOR_AMD, 0x73BF, 0xC1): "AMD Radeon RX 6800 XT",
    (VENDOR_AMD, 0x73BF, 0xC3): "AMD Radeon RX 6800",
    (VENDOR_AMD, 0x73DF, 0xC1): "AMD Radeon RX 6700 XT",
    (VENDOR_AMD, 0x67DF, 0xE7): "AMD Radeon RX 580 Series",
    (VENDOR_AMD, 0x1681, None): "AMD Radeon 680M",
    (VENDOR_AMD, 0x164E, None): "AMD Radeon Graphics",
    (VENDOR_INTEL, 0x46A6, None): "Intel Iris Xe Graphics",
    (VENDOR_INTEL, 0x9A49, None): "Intel Iris Xe Graphics",
    (VENDOR_INTEL, 0xA7A0, None): "Intel Iris Xe Graphics",
    (VENDOR_INTEL, 0x3E92, None): "Intel UHD Graphics 630",
    (VENDOR_INTEL, 0x56A0, None): "Intel Arc A770",
    (VENDOR_NVIDIA, 0x2204, None): "NVIDIA GeForce RTX 3090",
    (VENDOR_NVIDIA, 0x2684, None): "NVIDIA GeForce RTX 4090",
    (VENDOR_NVIDIA, 0x2504, None): "NVIDIA GeForce RTX 3060",
    (VENDOR_NVIDIA, 0x1B38, None): "NVIDIA Tesla P40",
    (VENDOR_NVIDIA, 0x1B06, None): "NVIDIA GeForce GTX 1080 Ti",
    (VENDOR_NVIDIA, 0x2560, None): "NVIDIA GeForce RTX 3060 Laptop GPU",
}

AMDGPU_IDS = Path("/usr/share/libdrm/amdgpu.ids")
PCI_IDS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))


def device_name(
    vendor: int,
    device: int,
    revision: int | None,
    amdgpu_ids: Path | None = AMDGPU_IDS,
    pci_ids: tuple[Path, ...] = PCI_IDS,
) -> str:
    """The marketing name of a PCI device, or 'AMD GPU 1002:744c' when nobody knows it."""
    for key in ((vendor, device, revision), (vendor, device, None)):
        if key in _KNOWN:
            return _KNOWN[key]
    if vendor == VENDOR_AMD and amdgpu_ids is not None:
        name = _amdgpu_ids_name(amdgpu_ids, device, revision)
        if name:
            return name
    for path in pci_ids:
        name = _pci_ids_name(path, vendor, device)
        if name:
            return name
    label = {VENDOR_AMD: "AMD GPU", VENDOR_INTEL: "Intel GPU", VENDOR_NVIDIA: "NVIDIA GPU"}
    return f"{label.get(vendor, 'GPU')} {vendor:04x}:{device:04x}"


def _amdgpu_ids_name(path: Path, device: int, revision: int | None) -> str | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = [p.strip() for p in line.split(",", 2)]
        if len(parts) == 3 and not line.startswith("#"):
            try:
                rev_ok = revision is None or int(parts[1], 16) == revision
                if int(parts[0], 16) == device and rev_ok:
                    return parts[2]
            except ValueError:
                continue
    return None


def _pci_ids_name(path: Path, vendor: int, device: int) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    in_vendor = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            in_vendor = line[:4].lower() == f"{vendor:04x}"
        elif in_vendor and not line.startswith("\t\t") and line[1:5].lower() == f"{device:04x}":
            return line[5:].strip()
    return None


def pcie_gen_from_speed(text: str | None) -> int | None:
    """sysfs link speed '16.0 GT/s PCIe' -> 4."""
    if not text:
        return None
    m = re.match(r"\s*([\d.]+)\s*GT/s", text)
    if not m:
        return None
    return {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}.get(float(m.group(1)))
