"""NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`).

Like nvitop's libnvml, every NVML call goes through one function (`Nvml.call`) that
initialises the library on first use and turns NVML errors into one exception with the
code. What NVML answers is first kept raw, as plain data keyed by field (the recorded-rig
format stores exactly this), then interpreted by `info_from_raw` / `sample_from_raw`, so
a recording and a live machine take the same road.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.pci import normalise_bus_id
from layerlab.core.devices.probe_chain import ProbeUnavailable, stale

# NVML return codes we explain (nvml.h)
NOT_SUPPORTED = 3
NO_PERMISSION = 4
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15

_UNAVAILABLE = {
    LIBRARY_NOT_FOUND: "no NVIDIA driver (libnvidia-ml.so.1 not found)",
    DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded",
    NO_PERMISSION: "no permission to read the NVIDIA GPUs",
}


class NvmlError(Exception):
    def __init__(self, call: str, code: int, text: str = ""):
        super().__init__(f"{call}: {text or 'NVML error'} ({code})")
        self.call, self.code = call, code


class Nvml:
    """Lazy NVML: nothing is loaded until the first call; every call goes through `call`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mod: Any = None
        self._unavailable: str | None = None
        self.unavailable_code: int | None = None  # NVML's code when nvmlInit failed

    def call(self, name: str, *args: Any) -> Any:
        mod = self._ready()
        try:
            return getattr(mod, name)(*args)
        except mod.NVMLError as e:
            raise NvmlError(name, int(e.value), str(e)) from None

    def constant(self, name: str) -> Any:
        return getattr(self._ready(), name)

    def _ready(self) -> Any:
        with self._lock:
            if self._mod is not None:
                return self._mod
            if self._unavailable:
                raise ProbeUnavailable(self._unavailable)
            try:
                import pynvml
            except ImportError:
                self._unavailable = "nvidia-ml-py is not installed"
                raise ProbeUnavailable(self._unavailable) from None
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as e:
                code = self.unavailable_code = int(e.value)
                self._unavailable = _UNAVAILABLE.get(code, f"NVML could not start: {e}")
                raise ProbeUnavailable(self._unavailable) from None
            self._mod = pynvml
            return pynvml

    def shutdown(self) -> None:
        with self._lock:
            if self._mod is not None:
                with contextlib.suppress(self._mod.NVMLError):
                    self._mod.nvmlShutdown()
                self._mod = None


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _struct(v: Any, fields: tuple[str, ...]) -> dict:
    return {
        f: (_text(getattr(v, f)) if isinstance(getattr(v, f), bytes | str) else int(getattr(v, f)))
        for f in fields
    }


# field -> (pynvml call, extra args as constant names, converter). The recording format.
STATIC_FIELDS: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "name": ("nvmlDeviceGetName", (), _text),
    "uuid": ("nvmlDeviceGetUUID", (), _text),
    "pci": (
        "nvmlDeviceGetPciInfo",
        (),
        lambda v: _struct(v, ("busId", "domain", "bus", "device", "pciDeviceId", "pciSubSystemId")),
    ),
    "power_limit_mw": ("nvmlDeviceGetEnforcedPowerLimit", (), int),
    "pcie_max_gen": ("nvmlDeviceGetMaxPcieLinkGeneration", (), int),
    "pcie_max_width": ("nvmlDeviceGetMaxPcieLinkWidth", (), int),
    "pcie_gen": ("nvmlDeviceGetCurrPcieLinkGeneration", (), int),
    "pcie_width": ("nvmlDeviceGetCurrPcieLinkWidth", (), int),
    "max_memory_clock_mhz": ("nvmlDeviceGetMaxClockInfo", ("NVML_CLOCK_MEM",), int),
    "memory_bus_width": ("nvmlDeviceGetMemoryBusWidth", (), int),
}
LIVE_FIELDS: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "memory": ("nvmlDeviceGetMemoryInfo", (), lambda v: _struct(v, ("total", "free", "used"))),
    "utilization": ("nvmlDeviceGetUtilizationRates", (), lambda v: _struct(v, ("gpu", "memory"))),
    "temperature_c": ("nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",), int),
    "power_mw": ("nvmlDeviceGetPowerUsage", (), int),
}


def read_fields(nv: Nvml, handle: Any, fields: dict) -> dict:
    """Ask NVML for each field; a field NVML refuses is recorded as {"nvml_error": code}."""
    out: dict[str, Any] = {}
    for field, (call, consts, convert) in fields.items():
        try:
            out[field] = convert(nv.call(call, handle, *(nv.constant(c) for c in consts)))
        except NvmlError as e:
            if e.code == GPU_IS_LOST:
                raise
            out[field] = {"nvml_error": e.code}
    return out


def value(raw: dict, field: str) -> Any:
    v = raw.get(field)
    return None if isinstance(v, dict) and "nvml_error" in v else v


def info_from_raw(raw: dict, index: int, driver: str | None) -> DeviceInfo:
    uuid = value(raw, "uuid")
    pci = value(raw, "pci") or {}
    clock, width = value(raw, "max_memory_clock_mhz"), value(raw, "memory_bus_width")
    memory = value(raw, "memory") or {}
    limit = value(raw, "power_limit_mw")
    return DeviceInfo(
        key=f"nvml:{uuid}" if uuid else f"nvml:#{index}",
        vendor="nvidia",
        name=value(raw, "name") or f"NVIDIA GPU {index}",
        kind="gpu",
        pci_bus_id=normalise_bus_id(pci.get("busId")),
        memory_total=int(memory.get("total", 0)),
        # GDDR and HBM move two transfers per memory clock as NVML counts it:
        # 3090 9751 MHz x 2 x 384 bit / 8 = 936 GB/s, its datasheet figure.
        memory_bandwidth=clock * 1_000_000 * 2 * width // 8 if clock and width else None,
        driver=f"NVIDIA {driver}" if driver else None,
        pcie_gen=value(raw, "pcie_max_gen"),
        pcie_width=value(raw, "pcie_max_width"),
        memory_clock_mhz=clock,
        memory_bus_width=width,
        power_limit_w=limit / 1000 if limit else None,
    )


def sample_from_raw(key: str, raw: dict, when: float) -> DeviceSample:
    memory = value(raw, "memory")
    if not memory:
        return stale(key, "NVML did not report memory", when)
    util = value(raw, "utilization") or {}
    power = value(raw, "power_mw")
    temp = value(raw, "temperature_c")
    return DeviceSample(
        key=key,
        memory_used=int(memory["used"]),
        memory_free=int(memory["free"]),
        memory_total=int(memory["total"]),
        utilization=float(util["gpu"]) if "gpu" in util else None,
        temperature_c=float(temp) if temp is not None else None,
        power_w=power / 1000 if power is not None else None,
        time=when,
    )


class NvmlProbe:
    name = "NVML"

    def __init__(self, nvml: Nvml | None = None):
        self.nvml = nvml or Nvml()
        self._handles: list[tuple[str, Any]] = []

    def _driver(self) -> str | None:
        try:
            return _text(self.nvml.call("nvmlSystemGetDriverVersion"))
        except NvmlError:
            return None

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        driver = self._driver()
        infos, self._handles = [], []
        count = self.nvml.call("nvmlDeviceGetCount")
        for i in range(count):
            try:
                handle = self.nvml.call("nvmlDeviceGetHandleByIndex", i)
                raw = read_fields(self.nvml, handle, STATIC_FIELDS | LIVE_FIELDS)
            except NvmlError:
                continue  # a GPU that fell off the bus or that we may not open
            info = info_from_raw(raw, i, driver)
            if info.pci_bus_id in claimed:
                continue
            infos.append(info)
            self._handles.append((info.key, handle))
        if not infos:
            raise ProbeUnavailable("NVML found no NVIDIA GPU")
        return infos

    def sample(self) -> list[DeviceSample]:
        out = []
        for key, handle in self._handles:
            now = time.time()
            try:
                out.append(sample_from_raw(key, read_fields(self.nvml, handle, LIVE_FIELDS), now))
            except NvmlError as e:
                out.append(stale(key, str(e), now))
        return out

    def record(self) -> dict:
        """This machine's NVML answers in the recorded-rig format."""
        try:
            count = self.nvml.call("nvmlDeviceGetCount")
        except ProbeUnavailable as e:
            return {"init_error": self.nvml.unavailable_code, "unavailable": str(e)}
        devices = []
        for i in range(count):
            handle = self.nvml.call("nvmlDeviceGetHandleByIndex", i)
            devices.append(read_fields(self.nvml, handle, STATIC_FIELDS | LIVE_FIELDS))
        try:
            cuda = int(self.nvml.call("nvmlSystemGetCudaDriverVersion"))
        except NvmlError:
            cuda = None
        return {"driver_version": self._driver(), "cuda_driver_version": cuda, "devices": devices}

    def close(self) -> None:
        self.nvml.shutdown()
