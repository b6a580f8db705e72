"""Worker tensor cache: the model's load time through a worker with an empty cache vs the
second load (tensors over 10 MiB come from the worker's disk cache instead of the wire).
For the 135M demo model only its ~30 MB output tensor qualifies; the gain shows on big models.

    .venv/bin/python bench/worker_cache.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _spine_common import median
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.conftest import WorkerProcess, free_port_pair


def load_seconds(plan: LoadPlan) -> float:
    """llama.cpp's load as the engine timed it (weights sent to the worker included)."""
    sup = EngineSupervisor()
    sup.start(plan)
    state = sup.wait_for((Ready, Failed), 90)
    assert isinstance(state, Ready), state
    sup.stop()
    return state.load_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    model = str(demo_model_path())
    cold, warm = [], []
    for _ in range(args.runs):
        tmp = Path(tempfile.mkdtemp())
        w = WorkerProcess(free_port_pair(), tmp)  # cache dir tmp/cache-<port>, empty
        try:
            plan = LoadPlan(model, n_ctx=1024, devices=[DeviceRef.rpc(w.endpoint)])
            cold.append(load_seconds(plan))
            w.wait_idle()
            warm.append(load_seconds(plan))
            cached = sum(
                f.stat().st_size for f in tmp.rglob("*") if f.is_file() and "cache" in str(f.parent)
            )
        finally:
            w.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    c, h = median(cold), median(warm)
    print(f"worker tensor cache, demo model over one loopback worker, median of {args.runs}")
    print(f"  first load (empty cache) : {c:6.3f} s   {[round(x, 3) for x in cold]}")
    print(f"  second load (cached)     : {h:6.3f} s   {[round(x, 3) for x in warm]}")
    print(f"  ratio second / first     : {h / c:6.3f}   (cache on disk: {cached / 2**20:.0f} MiB)")
    print("  times are llama.cpp's model load inside the engine (weights over RPC included)")


if __name__ == "__main__":
    main()
