"""Ask llama.cpp itself what a plan allocates per device, in a throwaway child process.

Tests and benchmarks use it to check the planner's forecast against llama.cpp; the app
never runs it (so it lives here, not in the installed package).

`measure(plan)` starts this file as a child (`python tests/support/dryrun.py`), which loads
the model with `no_alloc=True` and `load_mode=NONE` (FACTS.md: with mmap a no-alloc load aborts),
creates a context and reports the buffer sizes llama.cpp logs per device. With
`no_alloc=False` it really allocates (small models only): the "real load" numbers.

What the log says (checked on 0c1e570): with no_alloc the "model buffer size" and
"KV buffer size" lines print 0.00 MiB (the buffers are dummies); the compute buffer lines
are real, and the KV cache's total and per-layer device lines are printed. So a dry run
reports per-device weights as the sum of the tensors llama.cpp placed there (from its
per-layer assignment lines) and per-device KV from its per-layer lines; a real load reports
every buffer directly. Never decode with a no-alloc context.

Only the child imports llama_cpp.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from layerlab.core.engine.llama_log import LlamaLog
from layerlab.core.gguf import ggml_type
from layerlab.core.load_plan import DeviceRef, LoadPlan
from layerlab.core.units import MiB

_BUF = re.compile(
    r"^(?P<stage>\w+):\s+(?P<buf>\S+)\s+(?P<kind>model|KV|compute|output) buffer "
    r"size =\s+(?P<mib>[\d.]+) MiB"
)
_KV_LAYER = re.compile(r"llama_kv_cache: layer\s+(\d+): dev = (\S+)")
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers")


class DryRunError(RuntimeError):
    """llama.cpp could not load the plan (or the child died); the message has its log tail."""


@dataclass
class DeviceBuffers:
    model: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.model + self.kv + self.compute + self.output


@dataclass
class Measured:
    """Bytes per device as llama.cpp reported them; devices keyed by llama.cpp's names."""

    devices: dict[str, DeviceBuffers] = field(default_factory=dict)
    layer_devices: list[str] = field(default_factory=list)  # per unit (blocks + output)
    kv_layer_devices: list[str] = field(default_factory=list)
    kv_total: int = 0
    kv_cells: int = 0
    no_alloc: bool = True
    log_tail: str = ""

    def totals(self) -> dict[str, int]:
        return {k: v.total for k, v in self.devices.items()}


_RPC_BUF = re.compile(r"^RPC(\d+)\[(.+)\]$")


def buffer_device(buf: str) -> str:
    """llama.cpp buffer type name -> the plan's device label (DeviceRef.label).

    'CPU', 'CPU_Mapped', 'CPU_REPACK' -> 'CPU'; 'RPC0[127.0.0.1:50052]' -> 'RPC 127.0.0.1:50052'
    (device 0 of that worker); local GPUs keep their name ('CUDA0').
    """
    if buf.startswith("CPU"):
        return "CPU"
    m = _RPC_BUF.match(buf)
    if m:
        return DeviceRef.rpc(m.group(2), int(m.group(1))).label
    return buf


def parse_log(text: str) -> Measured:
    m = Measured()
    # which device got each layer: the engine's own reading of that log line
    layers = LlamaLog()
    layers.feed(text + "\n")
    m.layer_devices = [dev for _, dev in sorted(layers.layer_devices().items())]
    for line in text.splitlines():
        b = _BUF.match(line.strip())
        if b:
            dev = m.devices.setdefault(buffer_device(b["buf"]), DeviceBuffers())
            n = round(float(b["mib"]) * MiB)
            kind = b["kind"]
            if kind == "model":
                dev.model += n
            elif kind == "KV":
                dev.kv += n
            elif kind == "compute":
                dev.compute += n
            else:
                dev.output += n
            continue
        if (x := _KV_LAYER.search(line)) is not None:
            m.kv_layer_devices.append(x.group(2))
        elif (x := _KV_SIZE.search(line)) is not None:
            m.kv_total += round(float(x.group(1)) * MiB)
            m.kv_cells = max(m.kv_cells, int(x.group(2)))
    return m


def measure(
    plan: LoadPlan, no_alloc: bool = True, timeout: float = 120.0, swa_full: bool | None = None
) -> Measured:
    """Run the plan through llama.cpp in a child process and return what it allocates.

    Workers in the plan must have been probed first (llama.cpp aborts on a dead one).
    """
    request = json.dumps({"plan": plan.to_dict(), "no_alloc": no_alloc, "swa_full": swa_full})
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, __file__],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out:
        tail = (proc.stderr or "")[-3000:]
        raise DryRunError(f"llama.cpp could not load this plan (exit {proc.returncode}):\n{tail}")
    data = json.loads(out[-1])
    if "error" in data:
        raise DryRunError(data["error"] + "\n" + data.get("log_tail", ""))
    m = parse_log(data["log"])
    m.no_alloc = no_alloc
    m.log_tail = data["log"][-2000:]
    return m


def _child() -> int:  # pragma: no cover - runs in the child process
    import ctypes

    import llama_cpp.llama_cpp as L

    from layerlab.core import ggml_lib
    from layerlab.core.engine.model_session import SPLIT_MODES

    req = json.loads(sys.stdin.read())
    plan = LoadPlan.from_dict(req["plan"])
    no_alloc = bool(req["no_alloc"])
    lines: list[str] = []

    @L.llama_log_callback
    def on_log(level, text, user):
        lines.append(text.decode("utf-8", errors="replace"))

    L.llama_log_set(on_log, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.use_extra_bufts = plan.use_extra_bufts
    if no_alloc:
        mp.no_alloc = True
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    handles: list[int] = []
    for d in plan.devices:
        if d.kind == "rpc":
            handles.append(ggml_lib.rpc_devices(d.endpoint)[d.index])
        else:
            handles.append(ggml_lib.device_by_name(d.name))
    keep = None
    if plan.devices:
        keep = (ctypes.c_void_p * (len(handles) + 1))(*handles, None)
        mp.devices = ctypes.cast(keep, ctypes.c_void_p)
    split = (ctypes.c_float * L.llama_max_devices())()
    for i, s in enumerate(plan.tensor_split):
        split[i] = s
    mp.tensor_split = split
    mp.n_gpu_layers = plan.n_gpu_layers if plan.devices else 0
    mp.split_mode = SPLIT_MODES[plan.split_mode]
    mp.main_gpu = plan.main_gpu
    model = L.llama_model_load_from_file(plan.model_path.encode(), mp)
    if not model:
        print(json.dumps({"error": "the model did not load", "log_tail": "".join(lines)[-3000:]}))
        return 0
    cp = L.llama_context_default_params()
    # as the engine loads it (model_session.py): one KV stream of n_ctx cells per answer
    cp.n_ctx = plan.n_ctx * plan.parallel
    cp.n_seq_max = plan.parallel
    cp.kv_unified = False
    cp.n_batch = plan.n_batch
    cp.n_ubatch = plan.n_ubatch
    cp.type_k = ggml_type(plan.type_k)
    cp.type_v = ggml_type(plan.type_v)
    cp.flash_attn_type = (
        L.LLAMA_FLASH_ATTN_TYPE_ENABLED if plan.flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    if req.get("swa_full") is not None:
        cp.swa_full = bool(req["swa_full"])
    if plan.n_threads:
        cp.n_threads = cp.n_threads_batch = plan.n_threads
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        print(
            json.dumps(
                {
                    "error": "llama.cpp could not create the context",
                    "log_tail": "".join(lines)[-3000:],
                }
            )
        )
        return 0
    print(json.dumps({"log": "".join(lines)}), flush=True)
    # Freeing a no-alloc context is not needed; the process ends here.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_child())
