"""The planner's view of a device: where it is, what it holds free, and how fast it reads.

Built from the shared device contract (`Machine`, `DeviceInfo`, `DeviceSample`: this
machine, a recorded rig) and from worker probes (`ProbeResult`). Speeds that the probes do
not give come from a short table of known parts, else from conservative defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from layerlab.core.devices.model import Machine
from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.load_plan import DeviceRef

HOST_LABEL = "CPU"

# (peak memory bandwidth bytes/s, dense fp16 FLOP/s as llama.cpp can use them)
_KNOWN = {
    "rtx 4090": (1008e9, 165e12),
    "rtx 3090": (936e9, 71e12),
    "rtx 3080": (760e9, 59e12),
    "rtx 3060 laptop": (336e9, 22e12),
    "rtx 3060": (360e9, 25e12),
    "rtx 4060": (272e9, 30e12),
    "tesla p40": (347e9, 12e12),
    "gtx 1080 ti": (484e9, 11e12),
    "rx 7900 xtx": (960e9, 120e12),
    "rx 6800": (512e9, 32e12),
    "a100": (1555e9, 312e12),
    "h100": (3350e9, 990e12),
}
DEFAULT_GPU = (300e9, 15e12)
DEFAULT_CPU = (50e9, 0.5e12)  # dual-channel DDR4/5 as llama.cpp reaches it; AVX2 matmul
LAN_BANDWIDTH = 117e6  # 1 Gbit/s Ethernet payload, bytes/s
LOOPBACK_BANDWIDTH = 5e9


@dataclass(frozen=True)
class PlanDevice:
    label: str  # DeviceRef.label, or "CPU" for the head's host memory
    name: str
    machine: str  # "this machine" or the worker's "host:port"
    ref: DeviceRef | None  # None: the head's CPU (not in LoadPlan.devices)
    free: int
    total: int
    bandwidth: float  # bytes/s (peak)
    flops: float
    rtt_s: float = 0.0  # one network round trip to its machine; 0 for local devices
    link_bandwidth: float = LOOPBACK_BANDWIDTH
    reserve: int = 0
    excluded: bool = False
    kind: str = "gpu"  # gpu | igpu | cpu

    @property
    def is_host(self) -> bool:
        return self.ref is None

    @property
    def local(self) -> bool:
        return self.ref is None or self.ref.kind == "local"

    @property
    def capacity(self) -> int:
        return max(0, self.free - self.reserve)

    def with_(self, **kw) -> PlanDevice:
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "name": self.name,
            "machine": self.machine,
            "free": self.free,
            "total": self.total,
            "reserve": self.reserve,
            "bandwidth": self.bandwidth,
            "flops": self.flops,
            "rtt_ms": self.rtt_s * 1e3,
            "excluded": self.excluded,
            "kind": self.kind,
        }


def known_speed(name: str, kind: str) -> tuple[float, float]:
    low = name.lower()
    for key in sorted(_KNOWN, key=len, reverse=True):
        if key in low:
            return _KNOWN[key]
    return DEFAULT_CPU if kind == "cpu" else DEFAULT_GPU


def devices_from_machine(
    machine: Machine, worker: str | None = None, rtt_s: float = 0.0
) -> list[PlanDevice]:
    """Plan devices of a machine: the head (worker=None) or a worker at 'host:port'.

    Devices llama.cpp does not list (no `llama_name`, e.g. an iGPU beside a discrete GPU)
    are left out; the head's CPU becomes the host device.
    """
    out: list[PlanDevice] = []
    rpc_index = 0
    has_gpu = any(d.kind != "cpu" and d.llama_name for d in machine.devices)
    for d in machine.devices:
        if worker is not None and d.kind == "cpu" and has_gpu:
            continue  # a worker shares its GPUs, or its CPU only when it has none
        s = machine.samples.get(d.key)
        free = s.memory_free if s else d.memory_total
        bw, flops = known_speed(d.name, d.kind)
        if d.memory_bandwidth:
            bw = float(d.memory_bandwidth)
        if d.kind == "cpu" and worker is None:
            out.append(
                PlanDevice(
                    HOST_LABEL,
                    d.name,
                    machine.name,
                    None,
                    free,
                    d.memory_total,
                    bw,
                    flops,
                    kind="cpu",
                )
            )
            continue
        if not d.llama_name or d.memory_total <= 0:
            continue
        if worker is None:
            ref = DeviceRef.local(d.llama_name)
            out.append(
                PlanDevice(
                    ref.label,
                    d.name,
                    machine.name,
                    ref,
                    free,
                    d.memory_total,
                    bw,
                    flops,
                    kind=d.kind,
                )
            )
        else:
            ref = DeviceRef.rpc(worker, rpc_index)
            rpc_index += 1
            out.append(
                PlanDevice(
                    ref.label,
                    d.name,
                    worker,
                    ref,
                    free,
                    d.memory_total,
                    bw,
                    flops,
                    rtt_s=rtt_s,
                    link_bandwidth=_link(worker),
                    kind=d.kind,
                )
            )
    return out


def devices_from_probe(result) -> list[PlanDevice]:
    """Plan devices of a probed worker (`layerlab.core.cluster.worker_check.ProbeResult`)."""
    if not result.ok:
        return []
    ep = str(result.endpoint)
    rtt = (result.rtt_ms or 0.0) / 1e3
    out = []
    for d in result.devices:
        label = d.description or d.name or f"device {d.index}"
        kind = "cpu" if (d.name or "").upper().startswith("CPU") else "gpu"
        bw, flops = known_speed(label, kind)
        ref = DeviceRef.rpc(ep, d.index)
        out.append(
            PlanDevice(
                ref.label,
                f"{label} on {ep}",
                ep,
                ref,
                d.free,
                d.total,
                bw,
                flops,
                rtt_s=rtt,
                link_bandwidth=_link(ep),
                kind=kind,
            )
        )
    return out


def _link(endpoint: str) -> float:
    try:
        loop = Endpoint.parse(endpoint).is_loopback
    except BadAddress:
        loop = False
    return LOOPBACK_BANDWIDTH if loop else LAN_BANDWIDTH


def host_device(free: int, total: int, name: str = "Host RAM") -> PlanDevice:
    bw, flops = DEFAULT_CPU
    return PlanDevice(HOST_LABEL, name, "this machine", None, free, total, bw, flops, kind="cpu")
