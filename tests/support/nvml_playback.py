"""Play a recorded rig's NVML answers through the real `pynvml` module.

This fakes only the C library: pynvml looks every function up on `pynvml.nvmlLib`, and
we put an object there whose attributes are ctypes callbacks with NVML's C signatures.
pynvml's own Python code runs unchanged: it allocates its real structs, passes them by
pointer, and our callbacks fill them from the recording. Used by tests (NVIDIA hardware
is absent here), the benchmark and the screenshots; never by the app itself.

The recording is live: change `playback.devices[i]["memory"]` and the next call sees it.
A field recorded as {"nvml_error": code} makes its call return that code.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from ctypes import POINTER, c_int, c_uint, c_ulonglong, c_void_p
from typing import Any

SUCCESS, INVALID_ARGUMENT, UNINITIALIZED = 0, 2, 1
_HANDLE_BASE = 0x1000  # fake device handles: base + index (never dereferenced by pynvml)


def _out(ptr: int, ctype: Any) -> Any:
    return ctypes.cast(ptr, POINTER(ctype)).contents


class NvmlPlayback:
    def __init__(self, nvml_recording: dict):
        self.recording = nvml_recording
        self.devices: list[dict] = nvml_recording.get("devices", [])
        self.calls: list[str] = []  # every C function pynvml called, in order
        self._lock = threading.Lock()
        self._saved: tuple[Any, dict] | None = None
        self._keep: list[Any] = []  # callbacks and strings must outlive their use
        self._initialised = 0

    # -- installing into pynvml -------------------------------------------------------
    def install(self) -> NvmlPlayback:
        import pynvml

        self._saved = (pynvml.nvmlLib, dict(pynvml._nvmlGetFunctionPointer_cache))
        pynvml._nvmlGetFunctionPointer_cache.clear()
        pynvml.nvmlLib = _FakeLib(self)
        return self

    def uninstall(self) -> None:
        import pynvml

        if self._saved is not None:
            pynvml.nvmlLib, cache = self._saved
            pynvml._nvmlGetFunctionPointer_cache.clear()
            pynvml._nvmlGetFunctionPointer_cache.update(cache)
            self._saved = None

    def __enter__(self) -> NvmlPlayback:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # -- the C functions --------------------------------------------------------------
    def _device(self, handle: int | None) -> dict | None:
        i = (handle or 0) - _HANDLE_BASE
        return self.devices[i] if 0 <= i < len(self.devices) else None

    def _field(self, handle: int | None, field: str) -> tuple[int, Any]:
        if not self._initialised:
            return UNINITIALIZED, None
        dev = self._device(handle)
        if dev is None:
            return INVALID_ARGUMENT, None
        v = dev.get(field, {"nvml_error": 3})  # absent from the recording: not supported
        if isinstance(v, dict) and "nvml_error" in v:
            return int(v["nvml_error"]), None
        return SUCCESS, v

    def functions(self) -> dict[str, tuple[Any, Callable]]:
        """name -> (CFUNCTYPE, implementation)."""
        f = ctypes.CFUNCTYPE

        def uint_field(field: str, scale: Callable[[Any], int] = int):
            def impl(h: int, out: int) -> int:
                rc, v = self._field(h, field)
                if rc == SUCCESS:
                    _out(out, c_uint).value = scale(v)
                return rc

            return (f(c_int, c_void_p, c_void_p), impl)

        def text(value: str, buf: int, size: int) -> int:
            data = value.encode()
            if len(data) + 1 > size:
                return 7  # NVML_ERROR_INSUFFICIENT_SIZE
            ctypes.memmove(buf, data + b"\0", len(data) + 1)
            return SUCCESS

        def text_field(field: str):
            def impl(h: int, buf: int, size: int) -> int:
                rc, v = self._field(h, field)
                return text(v, buf, size) if rc == SUCCESS else rc

            return (f(c_int, c_void_p, c_void_p, c_uint), impl)

        def init(flags: int) -> int:
            if "init_error" in self.recording:
                return int(self.recording["init_error"] or 12)
            self._initialised += 1
            return SUCCESS

        def shutdown() -> int:
            if not self._initialised:
                return UNINITIALIZED
            self._initialised -= 1
            return SUCCESS

        def driver(buf: int, size: int) -> int:
            return text(self.recording.get("driver_version") or "", buf, size)

        def cuda(out: int) -> int:
            _out(out, c_int).value = int(self.recording.get("cuda_driver_version") or 0)
            return SUCCESS

        def count(out: int) -> int:
            if not self._initialised:
                return UNINITIALIZED
            _out(out, c_uint).value = len(self.devices)
            return SUCCESS

        def handle_by_index(index: int, out: int) -> int:
            if not self._initialised:
                return UNINITIALIZED
            if index >= len(self.devices):
                return INVALID_ARGUMENT
            _out(out, c_void_p).value = _HANDLE_BASE + index
            return SUCCESS

        def pci_info(h: int, out: int) -> int:
            import pynvml

            rc, v = self._field(h, "pci")
            if rc != SUCCESS:
                return rc
            s = _out(out, pynvml.nvmlPciInfo_t)
            bus_id = v["busId"].encode()
            s.busId = bus_id
            s.busIdLegacy = bus_id[:15]
            for k in ("domain", "bus", "device", "pciDeviceId", "pciSubSystemId"):
                setattr(s, k, v[k])
            return SUCCESS

        def memory(h: int, out: int) -> int:
            rc, v = self._field(h, "memory")
            if rc == SUCCESS:
                s = _out(out, c_ulonglong * 3)  # c_nvmlMemory_t: total, free, used
                s[0], s[1], s[2] = v["total"], v["free"], v["used"]
            return rc

        def utilization(h: int, out: int) -> int:
            rc, v = self._field(h, "utilization")
            if rc == SUCCESS:
                s = _out(out, c_uint * 2)  # c_nvmlUtilization_t: gpu, memory
                s[0], s[1] = v["gpu"], v["memory"]
            return rc

        def temperature(h: int, sensor: int, out: int) -> int:
            if sensor != 0:  # NVML_TEMPERATURE_GPU is the only sensor there is
                return INVALID_ARGUMENT
            return uint_field("temperature_c")[1](h, out)

        def max_clock(h: int, clock_type: int, out: int) -> int:
            if clock_type != 2:  # we recorded NVML_CLOCK_MEM only
                return 3
            return uint_field("max_memory_clock_mhz")[1](h, out)

        def error_string(code: int) -> int:
            s = ctypes.create_string_buffer(f"NVML error {code}".encode())
            self._keep.append(s)
            return ctypes.addressof(s)

        return {
            "nvmlInitWithFlags": (f(c_int, c_uint), init),
            "nvmlInit_v2": (f(c_int), lambda: init(0)),
            "nvmlShutdown": (f(c_int), shutdown),
            "nvmlErrorString": (f(c_void_p, c_int), error_string),
            "nvmlSystemGetDriverVersion": (f(c_int, c_void_p, c_uint), driver),
            "nvmlSystemGetCudaDriverVersion": (f(c_int, c_void_p), cuda),
            "nvmlSystemGetCudaDriverVersion_v2": (f(c_int, c_void_p), cuda),
            "nvmlDeviceGetCount_v2": (f(c_int, c_void_p), count),
            "nvmlDeviceGetHandleByIndex_v2": (f(c_int, c_uint, c_void_p), handle_by_index),
            "nvmlDeviceGetName": text_field("name"),
            "nvmlDeviceGetUUID": text_field("uuid"),
            "nvmlDeviceGetPciInfo_v3": (f(c_int, c_void_p, c_void_p), pci_info),
            "nvmlDeviceGetMemoryInfo": (f(c_int, c_void_p, c_void_p), memory),
            "nvmlDeviceGetUtilizationRates": (f(c_int, c_void_p, c_void_p), utilization),
            "nvmlDeviceGetTemperature": (f(c_int, c_void_p, c_uint, c_void_p), temperature),
            "nvmlDeviceGetPowerUsage": uint_field("power_mw"),
            "nvmlDeviceGetEnforcedPowerLimit": uint_field("power_limit_mw"),
            "nvmlDeviceGetMaxPcieLinkGeneration": uint_field("pcie_max_gen"),
            "nvmlDeviceGetMaxPcieLinkWidth": uint_field("pcie_max_width"),
            "nvmlDeviceGetCurrPcieLinkGeneration": uint_field("pcie_gen"),
            "nvmlDeviceGetCurrPcieLinkWidth": uint_field("pcie_width"),
            "nvmlDeviceGetMaxClockInfo": (f(c_int, c_void_p, c_uint, c_void_p), max_clock),
            "nvmlDeviceGetMemoryBusWidth": uint_field("memory_bus_width"),
        }


class _FakeLib:
    """Stands where pynvml keeps its CDLL; unknown names raise AttributeError, which pynvml
    turns into NVML_ERROR_FUNCTION_NOT_FOUND, as with an old driver."""

    def __init__(self, playback: NvmlPlayback):
        self._playback = playback
        self._table = playback.functions()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._table:
            raise AttributeError(name)
        proto, impl = self._table[name]
        pb = self._playback

        def logged(*args: Any) -> Any:
            with pb._lock:
                pb.calls.append(name)
            return impl(*args)

        fn = proto(logged)
        pb._keep.append(fn)
        return fn
