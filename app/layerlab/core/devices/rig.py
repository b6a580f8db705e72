"""Recorded rigs: a machine's raw probe answers as JSON, played back through our probes.

Format (version 1), every value exactly as the source gave it (memory in bytes):

    {
      "layerlab_rig": 1,
      "name": "RTX 3090 + Tesla P40",          # shown as the machine's name
      "notes": "free text: where it came from",
      "host": {"hostname", "kernel", "cpu_name", "logical_cpus",
               "memory_total", "memory_available", "cpu_percent"},
      "nvml": {"driver_version": "550.120", "cuda_driver_version": 12040,
               "devices": [{field: value or {"nvml_error": code}}]}   # nvml_probe fields
            | {"init_error": 12, "unavailable": "why"},                # nvmlInit failed
      "sysfs": {"class/drm/card1/device/mem_info_vram_total": "25753026560", ...},
      "llama_cpp": [{"name", "description", "type", "free", "total", "device_id"}] | null
    }

`load_rig(path)` gives the planner a Machine (devices + one sample each); `rig_probes`
gives the panel and benchmarks live probes over the same data; `record_rig()` writes this
machine in the same format (`layerlab devices --record FILE`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from layerlab.core.atomic_file import write_atomic
from layerlab.core.devices import drm, nvml_probe
from layerlab.core.devices.amd_sysfs import AmdSysfsProbe
from layerlab.core.devices.ggml_view import LlamaView, read_llama_devices
from layerlab.core.devices.host_probe import HostProbe, read_live, read_static
from layerlab.core.devices.inventory import Inventory, discover
from layerlab.core.devices.model import DeviceInfo, DeviceSample, Machine
from layerlab.core.devices.other_sysfs import OtherSysfsProbe
from layerlab.core.devices.probe_chain import Probe, ProbeUnavailable
from layerlab.core.devices.sysfs_tree import DictTree, DirTree

RIG_FORMAT = 1


class RigFormatError(ValueError):
    """The file is not a recorded rig this version can read."""


class RecordedNvmlProbe:
    """NVML answers from a recording, interpreted by the same functions as live ones."""

    name = "NVML"

    def __init__(self, nvml: dict | None):
        self.nvml = nvml or {"unavailable": "not recorded"}

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        if "devices" not in self.nvml:
            raise ProbeUnavailable(self.nvml.get("unavailable", "NVML unavailable"))
        infos = [
            nvml_probe.info_from_raw(raw, i, self.nvml.get("driver_version"))
            for i, raw in enumerate(self.nvml["devices"])
        ]
        infos = [i for i in infos if i.pci_bus_id not in claimed]
        if not infos:
            raise ProbeUnavailable("NVML found no NVIDIA GPU")
        return infos

    def sample(self) -> list[DeviceSample]:
        now = time.time()
        return [
            nvml_probe.sample_from_raw(info.key, raw, now)
            for info, raw in zip(self.discover(set()), self.nvml["devices"], strict=True)
        ]

    def close(self) -> None:
        pass


def read_rig(path: str | os.PathLike) -> dict:
    try:
        rig = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RigFormatError(f"{path}: cannot read a rig: {e}") from None
    if not isinstance(rig, dict) or rig.get("layerlab_rig") != RIG_FORMAT:
        raise RigFormatError(f"{path}: not a LayerLab rig (format {RIG_FORMAT} expected)")
    for k in ("name", "host"):
        if k not in rig:
            raise RigFormatError(f"{path}: the rig has no '{k}'")
    return rig


def rig_probes(rig: dict, nvml: Probe | None = None) -> list[Probe]:
    """Probes over a recording: the same chain as a live machine. `nvml` may replace the
    recorded NVML link (tests play the recording through the real pynvml instead)."""
    tree = DictTree(rig.get("sysfs") or {})
    host = rig["host"]
    return [
        nvml or RecordedNvmlProbe(rig.get("nvml")),
        AmdSysfsProbe(tree, kernel=host.get("kernel")),
        OtherSysfsProbe(tree),
        HostProbe(static=lambda: host, live=lambda: host),
    ]


def rig_inventory(rig: dict, nvml: Probe | None = None) -> Inventory:
    llama = rig.get("llama_cpp")
    return discover(
        rig_probes(rig, nvml),
        LlamaView(llama) if llama is not None else None,
        machine_name=rig["name"],
    )


def load_rig(path: str | os.PathLike) -> Machine:
    """A recorded machine: every device (matched to llama.cpp's names) with one sample."""
    inv = rig_inventory(read_rig(path))
    for probe, _ in inv.groups:
        for s in probe.sample():
            inv.machine.samples[s.key] = s
    return inv.machine


def record_rig(
    name: str, notes: str = "", sysfs_root: str = "/sys", with_llama: bool = True
) -> dict:
    """This machine, recorded."""
    probe = nvml_probe.NvmlProbe()
    try:
        nvml = probe.record()
    finally:
        probe.close()
    llama = read_llama_devices() if with_llama else None
    return {
        "layerlab_rig": RIG_FORMAT,
        "name": name,
        "notes": notes,
        "host": read_static() | read_live(),
        "nvml": nvml,
        "sysfs": drm.record(DirTree(sysfs_root)),
        "llama_cpp": llama.devices if llama and not llama.problem else None,
    }


def save_rig(rig: dict, path: str | os.PathLike) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(rig, indent=1) + "\n")
