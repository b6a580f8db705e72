"""What this LayerLab carries: its version, the llama.cpp build and RPC protocol, the backend
modules beside llama.cpp, and (in a short-lived child) the backends and devices llama.cpp
really registers here. `layerlab --version`, the About box, the welcome and `--self-test`
read it from here.

The GUI never loads llama.cpp (a GPU backend opens a context on every GPU): the static part
reads file names only; `read_runtime()` asks a child process, as the device view does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from layerlab import __version__
from layerlab.core.cluster.rpc_wire import RPC_PROTO_MAJOR, RPC_PROTO_MINOR

# The llama.cpp commit vendored in each pinned llama-cpp-python (the package does not say it
# at run time). An installer's bundle records its own in BUNDLE_RECORD.
LLAMA_COMMITS = {"0.3.36": "0c1e570"}
RPC_PROTO_PATCH = 0
# Written by installers/build-bundle.sh beside the frozen executable.
BUNDLE_RECORD = "layerlab-build.json"


@dataclass(frozen=True)
class BuildInfo:
    app: str
    llama_cpp_python: str
    llama_cpp: str  # the llama.cpp commit
    rpc_protocol: str
    modules: list[str]  # backend modules beside llama.cpp ("cpu-haswell", "vulkan"); [] built in
    frozen: bool  # an installed bundle, not a source checkout
    bundle: dict = field(default_factory=dict)  # what the bundle build recorded

    @property
    def module_build(self) -> bool:
        return bool(self.modules)

    def backends_text(self) -> str:
        """The modules in words: 'CPU (14 variants), Vulkan, RPC'; or 'built in'."""
        if not self.modules:
            return "built in (CPU, RPC)"
        cpu = [m for m in self.modules if m.startswith("cpu")]
        others = [m for m in self.modules if not m.startswith("cpu")]
        words = [f"CPU ({len(cpu)} variants)" if len(cpu) > 1 else "CPU"] if cpu else []
        words += [_BACKEND_WORDS.get(m, m) for m in others]
        return ", ".join(words)


_BACKEND_WORDS = {"vulkan": "Vulkan", "cuda": "CUDA", "rpc": "RPC", "hip": "ROCm"}


def llama_library_dir() -> Path | None:
    """llama_cpp/lib without importing llama_cpp (finding a package does not run it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib"


def module_names(directory: Path | None) -> list[str]:
    """Backend modules in a llama.cpp library folder: libggml-vulkan.so -> 'vulkan'."""
    if directory is None or not directory.is_dir():
        return []
    names = set()
    for p in directory.iterdir():
        stem = p.name.split(".")[0]  # libggml-cpu-haswell.so, ggml-cpu-haswell.dll
        stem = stem.removeprefix("lib")
        if stem.startswith("ggml-") and stem != "ggml-base":
            names.add(stem.removeprefix("ggml-"))
    # A build with everything compiled in has libggml-cpu and libggml-rpc too, but no
    # variants: only a build with loadable CPU variants counts as a module build.
    if not any(n.startswith("cpu-") for n in names):
        return []
    return sorted(names, key=lambda n: (not n.startswith("cpu"), n))


def bundle_record() -> dict:
    if not getattr(sys, "frozen", False):
        return {}
    try:
        return json.loads((Path(sys.executable).parent / BUNDLE_RECORD).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def build_info() -> BuildInfo:
    try:
        binding = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        binding = "not installed"
    record = bundle_record()
    return BuildInfo(
        app=__version__,
        llama_cpp_python=binding,
        llama_cpp=record.get("llama_cpp") or LLAMA_COMMITS.get(binding, "unknown"),
        rpc_protocol=f"{RPC_PROTO_MAJOR}.{RPC_PROTO_MINOR}.{RPC_PROTO_PATCH}",
        modules=module_names(llama_library_dir()),
        frozen=bool(getattr(sys, "frozen", False)),
        bundle=record,
    )


def version_text(info: BuildInfo | None = None) -> str:
    """`layerlab --version`: the first line is the app, the rest what it carries."""
    i = info or build_info()
    return (
        f"LayerLab {i.app}\n"
        f"llama.cpp {i.llama_cpp} (llama-cpp-python {i.llama_cpp_python}), "
        f"RPC protocol {i.rpc_protocol}\n"
        f"backends: {i.backends_text()}"
    )


@dataclass
class Runtime:
    """What llama.cpp registered in a fresh process: backends and devices."""

    backends: list[str] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)  # name, description, type, free, total
    problem: str = ""

    def best_device(self) -> str:
        """The ggml device a model should go to: a discrete GPU, else an integrated one;
        '' for the CPU."""
        for kind in ("gpu", "igpu"):
            for d in self.devices:
                if d["type"] == kind:
                    return d["name"]
        return ""

    def device_lines(self) -> list[str]:
        """'Vulkan0: NVIDIA GeForce RTX 3090 (Vulkan, 24.0 GiB)' per device."""
        out = []
        for d in self.devices:
            backend = backend_of(d["name"])
            size = f", {d['total'] / 2**30:.1f} GiB" if d["total"] else ""
            out.append(f"{d['name']}: {d['description']} ({backend}{size})")
        return out


def backend_of(device_name: str) -> str:
    """ggml device names are the backend's name and a number: 'Vulkan0', 'CUDA1', 'CPU'."""
    return device_name.rstrip("0123456789") or device_name


def read_runtime(timeout: float = 60.0, python: str = sys.executable) -> Runtime:
    """The backends and devices llama.cpp registers, from the same short-lived child the
    Devices panel asks (core/devices/ggml_view.py): the GUI never creates a GPU context."""
    from layerlab.core.devices.ggml_view import read_llama_devices

    view = read_llama_devices(timeout, python)
    return Runtime(backends=view.backends, devices=view.devices, problem=view.problem)
