"""The host's CPU and RAM through psutil: always there, the end of the fallback chain."""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from layerlab.core.devices.model import DeviceInfo, DeviceSample

HOST_KEY = "host"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def read_static() -> dict:
    psutil.cpu_percent(interval=None)  # the first call only starts the measurement
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpu_name": cpu_name(),
        "logical_cpus": psutil.cpu_count() or 1,
        "memory_total": psutil.virtual_memory().total,
    }


def read_live() -> dict:
    vm = psutil.virtual_memory()
    # interval=None: percent since the previous call, no sleeping in the sampler
    return {
        "memory_total": vm.total,
        "memory_available": vm.available,
        "cpu_percent": psutil.cpu_percent(interval=None),
    }


def info_from_raw(raw: dict) -> DeviceInfo:
    return DeviceInfo(
        key=HOST_KEY,
        vendor="cpu",
        name=f"Host RAM ({raw['cpu_name']})",
        kind="cpu",
        memory_total=int(raw["memory_total"]),
        driver=f"Linux {raw['kernel']}" if raw.get("kernel") else None,
    )


def sample_from_raw(raw: dict, when: float) -> DeviceSample:
    total, available = int(raw["memory_total"]), int(raw["memory_available"])
    pct = raw.get("cpu_percent")
    return DeviceSample(
        key=HOST_KEY,
        memory_used=total - available,
        memory_free=available,
        memory_total=total,
        utilization=float(pct) if pct is not None else None,
        time=when,
    )


class HostProbe:
    name = "psutil"

    def __init__(
        self, static: Callable[[], dict] = read_static, live: Callable[[], dict] = read_live
    ):
        self._static, self._live = static, live

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        return [info_from_raw(self._static())]

    def sample(self) -> list[DeviceSample]:
        return [sample_from_raw(self._live(), time.time())]

    def close(self) -> None:
        pass
