"""The load plan: every parameter of one model load, as one typed, serialisable object.

The planner produces it, the person sees it, and the engine takes it unchanged
(llama-cpp-python's `ModelSettings` is the model for this). Devices are listed in the
order llama.cpp will use them; `tensor_split[i]` is device i's share of the offloaded
layers, and the CPU takes the first blocks that are not offloaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from layerlab.core.endpoint import Endpoint

SplitMode = Literal["none", "layer", "row"]


@dataclass(frozen=True)
class DeviceRef:
    """One device llama.cpp will use: a local backend device, or device `index` of a worker."""

    kind: Literal["local", "rpc"]
    name: str = ""  # local: the ggml device name, e.g. "CUDA0", "Vulkan1"
    endpoint: str = ""  # rpc: "host:port"
    index: int = 0  # rpc: which of the worker's devices

    @classmethod
    def rpc(cls, endpoint: str | Endpoint, index: int = 0) -> DeviceRef:
        return cls(kind="rpc", endpoint=str(endpoint), index=index)

    @classmethod
    def local(cls, name: str) -> DeviceRef:
        return cls(kind="local", name=name)

    @property
    def label(self) -> str:
        """How the person sees it: 'RPC 127.0.0.1:50052' or 'CUDA0'."""
        if self.kind == "rpc":
            return f"RPC {self.endpoint}" + (f" #{self.index}" if self.index else "")
        return self.name


@dataclass
class LoadPlan:
    model_path: str
    model_name: str = ""
    n_ctx: int = 4096
    devices: list[DeviceRef] = field(default_factory=list)
    tensor_split: list[float] = field(default_factory=list)
    n_gpu_layers: int = -1  # -1: every layer (and the output) goes to the devices
    split_mode: SplitMode = "layer"
    main_gpu: int = 0
    n_threads: int | None = None  # None: llama.cpp's default for this CPU
    n_batch: int = 512
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    use_mmap: bool = True
    # FACTS.md: a native build on an AMX CPU with GCC 12 miscompiles the AMX repack path and
    # segfaults on the first decode; extra buffer types stay off unless the person opts in.
    use_extra_bufts: bool = False
    seed: int = 0xFFFFFFFF

    @property
    def workers(self) -> list[str]:
        """Distinct worker endpoints, in device order."""
        seen: list[str] = []
        for d in self.devices:
            if d.kind == "rpc" and d.endpoint not in seen:
                seen.append(d.endpoint)
        return seen

    def without_worker(self, endpoint: str) -> LoadPlan:
        """The same plan with one worker's devices (and their shares) taken out."""
        keep = [i for i, d in enumerate(self.devices) if d.endpoint != endpoint]
        plan = LoadPlan.from_dict(self.to_dict())
        plan.devices = [self.devices[i] for i in keep]
        if self.tensor_split:
            plan.tensor_split = [self.tensor_split[i] for i in keep]
        return plan

    def validate(self) -> None:
        if self.tensor_split and len(self.tensor_split) != len(self.devices):
            raise ValueError(
                f"tensor split has {len(self.tensor_split)} shares for {len(self.devices)} devices"
            )
        if any(s < 0 for s in self.tensor_split):
            raise ValueError("tensor split shares must not be negative")
        if self.n_ctx < 0:
            raise ValueError("context size must not be negative")
        for d in self.devices:
            if d.kind == "rpc":
                Endpoint.parse(d.endpoint)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> LoadPlan:
        data = dict(data)
        data["devices"] = [DeviceRef(**d) for d in data.get("devices", [])]
        data["tensor_split"] = [float(x) for x in data.get("tensor_split", [])]
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        return cls.from_dict(json.loads(text))


def expected_layer_devices(plan: LoadPlan, n_layer: int) -> list[str]:
    """Which device label llama.cpp gives each of the n_layer blocks and the output (last).

    Mirrors llama_model::load_tensors (FACTS.md): split points are the cumulative,
    normalised shares over n_layer + 1 units; the first blocks not offloaded stay on the CPU.
    Computed in float32 like llama.cpp so boundaries agree exactly.
    """
    import numpy as np

    n_units = n_layer + 1
    n_gpu = n_units if plan.n_gpu_layers < 0 else min(plan.n_gpu_layers, n_units)
    if not plan.devices:
        return ["CPU"] * n_units
    i_gpu_start = max(n_units - n_gpu, 0)
    shares = plan.tensor_split or [1.0] * len(plan.devices)
    if not any(shares):
        shares = [1.0] * len(plan.devices)  # llama.cpp would split by free memory
    splits = np.cumsum(np.array(shares, dtype=np.float32), dtype=np.float32)
    splits = (splits / splits[-1]).astype(np.float32)
    out = []
    for il in range(n_units):
        if il < i_gpu_start or (il - i_gpu_start) >= n_gpu:
            out.append("CPU")
            continue
        x = np.float32(il - i_gpu_start) / np.float32(n_gpu)
        idx = int(np.searchsorted(splits, x, side="right"))
        out.append(plan.devices[min(idx, len(plan.devices) - 1)].label)
    return out


def layers_by_device(devices_per_layer: list[str]) -> dict[str, str]:
    """Each device's layers in words, 'layers 10-29 + output', in the order devices first
    appear (the output's device last if it holds no block); devices_per_layer is each
    block's device, then the output's (events.Placement.layer_devices)."""
    if not devices_per_layer:
        return {}
    n_layer = len(devices_per_layer) - 1
    spans: dict[str, list[list[int]]] = {}
    for il, dev in enumerate(devices_per_layer[:n_layer]):
        s = spans.setdefault(dev, [])
        if s and s[-1][1] == il - 1:
            s[-1][1] = il
        else:
            s.append([il, il])
    out: dict[str, str] = {}
    for dev, ss in spans.items():
        text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ss)
        single = len(ss) == 1 and ss[0][0] == ss[0][1]
        out[dev] = ("layer " if single else "layers ") + text
    out_dev = devices_per_layer[-1]
    out[out_dev] = f"{out[out_dev]} + output" if out_dev in out else "output"
    return out


def describe_ranges(devices_per_layer: list[str]) -> str:
    """'RPC 127.0.0.1:50052: layers 0-9 · RPC 127.0.0.1:50053: layers 10-29 + output'."""
    return " · ".join(f"{dev}: {text}" for dev, text in layers_by_device(devices_per_layer).items())


def default_plan(
    model_path: str, workers: dict[str, int] | None = None, n_ctx: int = 4096, model_name: str = ""
) -> LoadPlan:
    """llama.cpp's own default: every layer on the given workers' devices (`endpoint ->
    device count`), split in proportion to their free memory; the CPU alone without them."""
    devices = [DeviceRef.rpc(ep, i) for ep, n in (workers or {}).items() for i in range(max(n, 1))]
    return LoadPlan(model_path=model_path, model_name=model_name, n_ctx=n_ctx, devices=devices)
