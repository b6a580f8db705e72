"""ggml's device registry and RPC calls, through the copy of ggml that libllama uses.

Only the engine and worker processes import this (it loads llama.cpp). FACTS.md: the
shared libraries exist as separate files per soname, and opening `libggml.so` directly
loads a second copy with its own device registry, whose RPC devices llama.cpp never sees.
dlsym on llama-cpp-python's own libllama handle resolves ggml's symbols in the copy
llama.cpp really uses.

The installers' llama.cpp has its backends as loadable modules (all CPU variants, Vulkan,
CUDA): such a build registers no backend until asked, and ggml looks for the modules beside
the executable (python, or the frozen app), not in llama_cpp/lib. `lib()` loads them from
there once, through this same handle. There the RPC functions live in the RPC module, not in
libllama's libraries, and are reached through the RPC registry's proc addresses.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEVICE_TYPE_CPU = 0
DEVICE_TYPE_GPU = 1
DEVICE_TYPE_IGPU = 2
DEVICE_TYPE_ACCEL = 3
DEVICE_TYPE_NAMES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}

dev_t = ctypes.c_void_p
reg_t = ctypes.c_void_p


class _DevProps(ctypes.Structure):
    # struct ggml_backend_dev_props (ggml-backend.h, vendored 0c1e570)
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t),
        ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int),
        ("device_id", ctypes.c_char_p),
        # caps and any later fields follow; we never read them, and the struct is
        # only ever written by ggml into our (larger) buffer below.
    ]


@dataclass(frozen=True)
class GgmlDevice:
    """One ggml backend device as llama.cpp sees it."""

    handle: int
    name: str
    description: str
    type: str
    free: int
    total: int
    device_id: str  # PCI bus id where the backend knows it, else ""


@cache
def lib() -> ctypes.CDLL:
    import llama_cpp.llama_cpp as llama_cpp_module

    handle = llama_cpp_module._lib
    _declare(handle)
    _load_backend_modules(handle)
    return handle


def library_dir() -> Path:
    """llama_cpp/lib: where llama-cpp-python installed llama.cpp (and its backend modules)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("llama_cpp")
    return Path(spec.origin).parent / "lib"


def _load_backend_modules(h: ctypes.CDLL) -> None:
    # A build with backends compiled in has registered them already (CPU at least): the
    # development build. Only a module build starts with none.
    if h.ggml_backend_reg_count() == 0:
        h.ggml_backend_load_all_from_path(str(library_dir()).encode())


def backends() -> list[str]:
    """The backends llama.cpp has registered here ("CPU", "Vulkan", "RPC", ...)."""
    h = lib()
    return [
        (h.ggml_backend_reg_name(h.ggml_backend_reg_get(i)) or b"").decode()
        for i in range(h.ggml_backend_reg_count())
    ]


_RpcAddServer = ctypes.CFUNCTYPE(reg_t, ctypes.c_char_p)
_RpcStartServer = ctypes.CFUNCTYPE(
    None,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_size_t,
    ctypes.POINTER(dev_t),
)


@cache
def _rpc_function(name: str, prototype: type) -> ctypes._CFuncPtr:
    """An RPC function from whichever library holds it: libllama's (built in) or the RPC
    module's (asked through its registry, as ggml means modules to be used)."""
    h = lib()
    try:
        return prototype((name, h))
    except AttributeError:
        pass
    reg = h.ggml_backend_reg_by_name(b"RPC")
    address = h.ggml_backend_reg_get_proc_address(reg, name.encode()) if reg else None
    if not address:
        raise RuntimeError("this llama.cpp was built without its RPC backend")
    return prototype(address)


def _declare(h: ctypes.CDLL) -> None:
    h.ggml_backend_dev_count.restype = ctypes.c_size_t
    h.ggml_backend_dev_count.argtypes = []
    h.ggml_backend_dev_get.restype = dev_t
    h.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    h.ggml_backend_dev_by_type.restype = dev_t
    h.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    h.ggml_backend_dev_by_name.restype = dev_t
    h.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
    h.ggml_backend_dev_name.restype = ctypes.c_char_p
    h.ggml_backend_dev_name.argtypes = [dev_t]
    h.ggml_backend_dev_description.restype = ctypes.c_char_p
    h.ggml_backend_dev_description.argtypes = [dev_t]
    h.ggml_backend_dev_memory.restype = None
    h.ggml_backend_dev_memory.argtypes = [
        dev_t,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    h.ggml_backend_dev_type.restype = ctypes.c_int
    h.ggml_backend_dev_type.argtypes = [dev_t]
    h.ggml_backend_dev_get_props.restype = None
    h.ggml_backend_dev_get_props.argtypes = [dev_t, ctypes.c_void_p]
    h.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    h.ggml_backend_reg_dev_count.argtypes = [reg_t]
    h.ggml_backend_reg_dev_get.restype = dev_t
    h.ggml_backend_reg_dev_get.argtypes = [reg_t, ctypes.c_size_t]
    h.ggml_backend_reg_count.restype = ctypes.c_size_t
    h.ggml_backend_reg_count.argtypes = []
    h.ggml_backend_reg_get.restype = reg_t
    h.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
    h.ggml_backend_reg_name.restype = ctypes.c_char_p
    h.ggml_backend_reg_name.argtypes = [reg_t]
    h.ggml_backend_reg_by_name.restype = reg_t
    h.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    h.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    h.ggml_backend_reg_get_proc_address.argtypes = [reg_t, ctypes.c_char_p]
    h.ggml_backend_load_all_from_path.restype = None
    h.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]


def describe(dev: int) -> GgmlDevice:
    h = lib()
    props = ctypes.create_string_buffer(256)  # larger than the struct in any recent ggml
    h.ggml_backend_dev_get_props(dev, props)
    p = _DevProps.from_buffer(props)
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    h.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    dtype = h.ggml_backend_dev_type(dev)
    return GgmlDevice(
        handle=dev,
        name=(h.ggml_backend_dev_name(dev) or b"").decode(),
        description=(h.ggml_backend_dev_description(dev) or b"").decode(),
        type=DEVICE_TYPE_NAMES.get(dtype, str(dtype)),
        free=free.value,
        total=total.value,
        device_id=(p.device_id or b"").decode(),
    )


def local_devices() -> list[GgmlDevice]:
    """Every device registered in this process (CPU included), in registry order."""
    h = lib()
    return [describe(h.ggml_backend_dev_get(i)) for i in range(h.ggml_backend_dev_count())]


def device_by_name(name: str) -> int:
    dev = lib().ggml_backend_dev_by_name(name.encode())
    if not dev:
        raise LookupError(f"llama.cpp has no device named '{name}' on this machine")
    return dev


def cpu_device() -> int:
    return lib().ggml_backend_dev_by_type(DEVICE_TYPE_CPU)


def rpc_devices(endpoint: str) -> list[int]:
    """Connect to a worker and return its device handles (registers nothing globally).

    Aborts the process if the worker is unreachable: probe it first.
    """
    reg = _rpc_function("ggml_backend_rpc_add_server", _RpcAddServer)(endpoint.encode())
    if not reg:
        raise ConnectionError(f"worker {endpoint} reports no devices")
    h = lib()
    return [h.ggml_backend_reg_dev_get(reg, i) for i in range(h.ggml_backend_reg_dev_count(reg))]


def start_rpc_server(
    endpoint: str, devices: list[int], cache_dir: str | None, n_threads: int
) -> None:
    """Serve the devices over ggml RPC. Blocks forever; returns only if the bind fails."""
    arr = (dev_t * len(devices))(*devices)
    _rpc_function("ggml_backend_rpc_start_server", _RpcStartServer)(
        endpoint.encode(), cache_dir.encode() if cache_dir else None, n_threads, len(devices), arr
    )
