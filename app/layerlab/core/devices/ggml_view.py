"""llama.cpp's own device list, read in a short-lived child process, and matched to ours.

Initialising llama.cpp's GPU backends creates a context on every GPU, so the GUI process
never does it: `read_llama_devices()` runs `python -m layerlab.core.devices.ggml_view`,
which prints the ggml device list as JSON and exits. Matching is by PCI bus id (the ggml
CUDA and Vulkan backends report it as device_id); ggml's CPU device is the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field, replace

from layerlab.core.devices.host_probe import HOST_KEY
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.pci import normalise_bus_id

MARK = "LAYERLAB-GGML-DEVICES "


@dataclass
class LlamaView:
    # each: name, description, type, free, total, device_id (as ggml_lib reports them)
    devices: list[dict] = field(default_factory=list)
    problem: str = ""
    backends: list[str] = field(default_factory=list)  # what llama.cpp registered ("CPU", ...)


def read_llama_devices(timeout: float = 60.0, python: str = sys.executable) -> LlamaView:
    try:
        proc = subprocess.run(
            [python, "-m", "layerlab.core.devices.ggml_view"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return LlamaView(problem=f"llama.cpp did not list its devices within {timeout:g} s")
    except OSError as e:
        return LlamaView(problem=f"could not start {python}: {e}")
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            raw = json.loads(line[len(MARK) :])
            return LlamaView(devices=raw["devices"], backends=raw["backends"])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return LlamaView(
        problem=f"llama.cpp could not list its devices (exit {proc.returncode}: {tail})"
    )


@dataclass
class LlamaMatch:
    devices: list[DeviceInfo]  # ours, with llama_name set where matched, then llama-only ones
    names: dict[str, str]  # every llama.cpp device name -> our device key
    unseen_by_llama: list[str]  # keys of our GPUs llama.cpp does not list
    llama_only: list[DeviceSample]  # llama.cpp's memory numbers for devices only it sees


def _vendor(description: str) -> str:
    d = description.lower()
    for word, vendor in (
        ("nvidia", "nvidia"),
        ("geforce", "nvidia"),
        ("tesla", "nvidia"),
        ("radeon", "amd"),
        ("amd", "amd"),
        ("intel", "intel"),
    ):
        if word in d:
            return vendor
    return "other"


def match_llama(infos: list[DeviceInfo], llama: list[dict], when: float = 0.0) -> LlamaMatch:
    out = list(infos)
    by_bus = {i.pci_bus_id: n for n, i in enumerate(out) if i.pci_bus_id}
    host = next((n for n, i in enumerate(out) if i.key == HOST_KEY), None)
    names: dict[str, str] = {}
    extra: list[DeviceInfo] = []
    extra_samples: list[DeviceSample] = []
    for d in llama:
        bus = normalise_bus_id(d.get("device_id"))
        n = host if d.get("type") == "cpu" else by_bus.get(bus)
        if n is not None:
            names[d["name"]] = out[n].key
            if out[n].llama_name is None:  # a GPU two backends list keeps the first name
                out[n] = replace(
                    out[n], llama_name=d["name"], llama_description=d.get("description") or None
                )
            continue
        # A device only llama.cpp sees (no NVML/sysfs for it, or no bus id to match by).
        key = f"ggml:{d['name']}"
        kind = d.get("type") if d.get("type") in ("gpu", "igpu", "cpu") else "gpu"
        extra.append(
            DeviceInfo(
                key=key,
                vendor=_vendor(d.get("description", "")),  # type: ignore[arg-type]
                name=d.get("description") or d["name"],
                kind=kind,
                pci_bus_id=bus,
                memory_total=int(d.get("total", 0)),
                llama_name=d["name"],
                llama_description=d.get("description") or None,
                partial=True,
            )
        )
        total, free = int(d.get("total", 0)), int(d.get("free", 0))
        extra_samples.append(
            DeviceSample(
                key=key, memory_used=total - free, memory_free=free, memory_total=total, time=when
            )
        )
        names[d["name"]] = key
    matched = set(names.values())
    unseen = [i.key for i in out if i.kind != "cpu" and i.key not in matched]
    return LlamaMatch(out + extra, names, unseen, extra_samples)


def main() -> int:
    from layerlab.core import ggml_lib

    devices = [
        {
            "name": d.name,
            "description": d.description,
            "type": d.type,
            "free": d.free,
            "total": d.total,
            "device_id": d.device_id,
        }
        for d in ggml_lib.local_devices()
    ]
    print(MARK + json.dumps({"devices": devices, "backends": ggml_lib.backends()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
