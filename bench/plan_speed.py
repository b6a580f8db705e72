"""Planning time for a header-only 70B on 5 devices, and header read time from a hub stand-in.

python bench/plan_speed.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from layerlab.core.devices.rig import load_rig  # noqa: E402
from layerlab.core.gguf import HubFile, read_facts  # noqa: E402
from layerlab.core.planner.devices import devices_from_machine  # noqa: E402
from layerlab.core.planner.planner import Planner, PlanOptions  # noqa: E402
from tests.support.hub_standin import HubStandIn  # noqa: E402
from tests.support.synthetic_gguf import LLAMA_70B, write_model  # noqa: E402

RIGS = ROOT / "tests" / "fixtures" / "rigs"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(Path(tmp) / "llama-70b-Q4_K_M.gguf", LLAMA_70B, sparse=True)
        t0 = time.perf_counter()
        facts = read_facts(path)
        print(f"local header read (70B, 128k vocab): {(time.perf_counter() - t0) * 1e3:.1f} ms")
        devices = devices_from_machine(load_rig(RIGS / "3090-p40.json"))
        devices += [
            d
            for d in devices_from_machine(
                load_rig(RIGS / "2x3060.json"), worker="10.0.0.2:50052", rtt_s=0.0005
            )
            if not d.is_host
        ]
        print(f"devices: {', '.join(d.label for d in devices)}")
        planner = Planner(facts, str(path))
        for strategy in ("fastest", "proportional", "manual"):
            times = []
            for i in range(30):
                opts = PlanOptions(
                    strategy=strategy, n_ctx=4096 + 256 * i, ratios={d.label: 1.0 for d in devices}
                )
                t0 = time.perf_counter()
                planner.plan(devices, opts)
                times.append(time.perf_counter() - t0)
            med = statistics.median(times) * 1e3
            print(
                f"plan {strategy:<12} 70B on 5 devices: median {med:.1f} ms, "
                f"max {max(times) * 1e3:.1f} ms (new context each run, worker advice on)"
            )
        with HubStandIn() as hub:
            hub.add_repo("bench/llama-70b", Path(tmp))
            times = []
            for _ in range(5):
                src = HubFile("bench/llama-70b", path.name, endpoint=hub.endpoint)
                t0 = time.perf_counter()
                read_facts(src)
                times.append(time.perf_counter() - t0)
            print(
                f"remote header read via huggingface_hub (loopback stand-in): median "
                f"{statistics.median(times) * 1e3:.0f} ms, {src.requests} requests, "
                f"{src.bytes_read / 2**20:.1f} MiB of a "
                f"{path.stat().st_size / 2**30:.1f} GiB file"
            )


if __name__ == "__main__":
    main()
