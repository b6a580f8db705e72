"""The load plan: every parameter of one model load, as one typed, serialisable object.

The planner produces it, the person sees it, and the engine takes it unchanged
(llama-cpp-python's `server/settings.py` `ModelSettings` is the model for this: one described,
validated field per load parameter). Devices are listed in the order llama.cpp will use them;
`tensor_split[i]` is device i's share of the offloaded layers, and the CPU takes the first
blocks that are not offloaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from layerlab.core.endpoint import Endpoint

SplitMode = Literal["none", "layer", "row"]
KVType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]


class DeviceRef(BaseModel):
    """One device llama.cpp will use: a local backend device, or device `index` of a worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local", "rpc"] = Field(
        description="'local': a backend device of this machine; 'rpc': a device of a worker"
    )
    name: str = Field("", description="local: the ggml device name, e.g. 'CUDA0', 'Vulkan1'")
    endpoint: str = Field("", description="rpc: the worker as the person knows it, 'host:port'")
    index: int = Field(0, ge=0, description="rpc: which of the worker's devices")

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
            return rpc_label(self.endpoint, self.index)
        return self.name


def rpc_label(endpoint: str, index: int = 0) -> str:
    """The one name of a worker's device, as the engine and the gauges show it:
    'RPC host:port', with ' #1' for the worker's second device."""
    return f"RPC {endpoint}" + (f" #{index}" if index else "")


class LoadPlan(BaseModel):
    """Every parameter of one model load. What the layer map shows is what loads."""

    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(description="the GGUF file (the first part of a split GGUF)")
    model_name: str = Field("", description="what the person calls the model")
    n_ctx: int = Field(
        4096, ge=0, le=1 << 22, description="context size in tokens of each answer (0: trained)"
    )
    parallel: int = Field(
        1,
        ge=1,
        le=64,
        description="answers decoded together (slots); each has its own n_ctx of KV cache",
    )
    devices: list[DeviceRef] = Field(
        default_factory=list,
        description="the devices layers go to, in llama.cpp's order; empty: the CPU alone",
    )
    tensor_split: list[float] = Field(
        default_factory=list,
        description="device i's share of the offloaded layers; empty: by free memory",
    )
    n_gpu_layers: int = Field(
        -1, ge=-1, description="layers (output included) on the devices; -1: all of them"
    )
    split_mode: SplitMode = Field("layer", description="how layers are spread over devices")
    main_gpu: int = Field(0, ge=0, description="split mode 'none': the device that holds all")
    n_threads: int | None = Field(
        None, ge=1, description="CPU compute threads; None: llama.cpp's default for this CPU"
    )
    n_batch: int = Field(512, ge=1, description="logical batch size for prompt processing")
    n_ubatch: int = Field(512, ge=1, description="physical batch size (sizes compute buffers)")
    type_k: KVType = Field("f16", description="KV cache type of keys")
    type_v: KVType = Field("f16", description="KV cache type of values (quantized: flash attn)")
    flash_attn: bool = Field(False, description="use flash attention")
    use_mmap: bool = Field(True, description="map the file instead of reading it into memory")
    # A greedy answer's token is the argmax of n_vocab logits: taken on the worker that holds
    # the output layer, only the token crosses to the head, not n_vocab floats a token (600 KB
    # for a 152k vocabulary; over 1 Gbit ~5 ms a token per answer).
    greedy_on_device: bool = Field(
        True, description="greedy answers pick their token on the worker with the output layer"
    )
    # FACTS.md: a native build on an AMX CPU with GCC 12 miscompiles the AMX repack path and
    # segfaults on the first decode; extra buffer types stay off unless the person opts in.
    use_extra_bufts: bool = Field(False, description="let llama.cpp repack weights (AMX, ...)")
    seed: int = Field(0xFFFFFFFF, ge=0, description="sampling seed; 0xFFFFFFFF: random")

    def __init__(self, model_path: str | None = None, /, **data: Any) -> None:
        # LoadPlan("model.gguf", n_ctx=512): the model is the one field every plan names.
        if model_path is not None:
            data["model_path"] = model_path
        super().__init__(**data)

    @field_validator("tensor_split")
    @classmethod
    def _shares_not_negative(cls, v: list[float]) -> list[float]:
        if any(s < 0 for s in v):
            raise ValueError("tensor split shares must not be negative")
        return v

    @field_validator("devices")
    @classmethod
    def _worker_addresses(cls, v: list[DeviceRef]) -> list[DeviceRef]:
        for d in v:
            if d.kind == "rpc":
                Endpoint.parse(d.endpoint)  # BadAddress is a ValueError: it says what is wrong
        return v

    @model_validator(mode="after")
    def _one_share_per_device(self) -> LoadPlan:
        if self.tensor_split and len(self.tensor_split) != len(self.devices):
            raise ValueError(
                f"tensor split has {len(self.tensor_split)} shares for {len(self.devices)} devices"
            )
        return self

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
        return self.model_copy(
            update={
                "devices": [self.devices[i] for i in keep],
                "tensor_split": [self.tensor_split[i] for i in keep] if self.tensor_split else [],
            },
            deep=True,
        )

    def validate(self) -> None:  # type: ignore[override]  # pydantic v1's classmethod name
        """Check the whole plan again (fields can be assigned one by one); the first problem
        in words, as a ValueError."""
        try:
            LoadPlan.model_validate(self.model_dump())
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None

    def to_dict(self) -> dict:
        return self.model_dump()

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_dict(cls, data: dict) -> LoadPlan:
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        return cls.model_validate_json(text)


def expected_layer_devices(plan: LoadPlan, n_layer: int) -> list[str]:
    """Which device label llama.cpp gives each of the n_layer blocks and the output (last).

    Mirrors llama_model::load_tensors (FACTS.md): the first blocks not offloaded stay on the
    CPU, the offloaded units are split as `split_units` says.
    """
    n_units = n_layer + 1
    n_gpu = n_units if plan.n_gpu_layers < 0 else min(plan.n_gpu_layers, n_units)
    if not plan.devices:
        return ["CPU"] * n_units
    shares = plan.tensor_split or [1.0] * len(plan.devices)
    owners = split_units(shares, n_gpu)
    return ["CPU"] * (n_units - n_gpu) + [plan.devices[i].label for i in owners]


def split_units(shares: list[float], n_units: int) -> list[int]:
    """The device (an index into `shares`) llama.cpp gives each of `n_units` offloaded units.

    The split points are the cumulative, normalised shares; unit i goes to the first device
    whose split point lies above i / n_units. Computed in float32 like llama.cpp so
    boundaries agree exactly. All-zero shares: llama.cpp would split by free memory; equal
    shares stand in for that.
    """
    import numpy as np

    if not any(shares):
        shares = [1.0] * len(shares)
    splits = np.cumsum(np.array(shares, dtype=np.float32), dtype=np.float32)
    splits = (splits / splits[-1]).astype(np.float32)
    last = len(shares) - 1
    return [
        min(int(np.searchsorted(splits, np.float32(i) / np.float32(n_units), side="right")), last)
        for i in range(n_units)
    ]


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
    device count`), split in proportion to their free memory; the CPU alone without them.
    Flash attention on, as the planner plans it and as llama.cpp's "auto" turns it on for
    the CPU and GPUs: four answers at once took 21.4 against 25.1 ms a step with it on and
    off (the demo on 2 CPU cores, in one process, alternating), and a follow-up turn that
    reuses its cached answer reads as a fresh one only with it on."""
    devices = [DeviceRef.rpc(ep, i) for ep, n in (workers or {}).items() for i in range(max(n, 1))]
    return LoadPlan(
        model_path=model_path, model_name=model_name, n_ctx=n_ctx, devices=devices, flash_attn=True
    )
