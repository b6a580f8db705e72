"""Forecast error table: our memory model vs what llama.cpp really allocated, per device.

Starts two loopback workers, loads the demo model and generated shapes for real
(no_alloc=False, one child process per row) and prints forecast, actual and error.

    python bench/plan_forecast.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from layerlab.core.demo_model import demo_model_path  # noqa: E402
from layerlab.core.gguf import read_facts  # noqa: E402
from layerlab.core.load_plan import DeviceRef, LoadPlan  # noqa: E402
from layerlab.core.planner.forecast import compare, forecast_plan  # noqa: E402
from tests.conftest import WorkerProcess, free_port_pair  # noqa: E402
from tests.planner.conftest import SHAPES  # noqa: E402
from tests.support.dryrun import measure  # noqa: E402
from tests.support.synthetic_gguf import write_model  # noqa: E402

MiB = 1 << 20


def main() -> None:
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(2):
                procs.append(WorkerProcess(free_port_pair(), Path(tmp), threads=1, cache=False))
            w = [DeviceRef.rpc(p.endpoint) for p in procs]
            models = {"SmolLM2-135M Q4_1": str(demo_model_path())}
            for name, spec in SHAPES.items():
                models[name] = str(write_model(Path(tmp) / f"{name}.gguf", spec))
            setups = [
                ("CPU", [], [], 0, 4096, "f16", True),
                ("1 worker", w[:1], [1], -1, 4096, "q8_0", True),
                ("2 workers 1:2", w, [1, 2], -1, 8192, "f16", False),
                ("CPU+2 workers", w, [1, 1], 20, 2048, "q4_0", True),
            ]
            print(
                "| model | setup | ctx | KV | device | forecast MiB | actual MiB | error MiB "
                "| error % |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            worst = 0.0
            for mname, path in models.items():
                facts = read_facts(path)
                for sname, devs, split, ngl, ctx, kv, fa in setups:
                    if kv != "f16" and facts.head_dim_k % 32:
                        continue
                    plan = LoadPlan(
                        model_path=path,
                        n_ctx=ctx,
                        devices=devs,
                        tensor_split=split,
                        n_gpu_layers=ngl,
                        type_k=kv,
                        type_v=kv,
                        flash_attn=fa,
                    )
                    actual = measure(plan, no_alloc=False).totals()
                    for e in compare(forecast_plan(facts, plan), actual):
                        worst = max(worst, abs(e.error) / MiB)
                        print(
                            f"| {mname} | {sname} | {ctx} | {kv} | {e.device} | "
                            f"{e.forecast / MiB:.1f} | {e.actual / MiB:.1f} | "
                            f"{e.error / MiB:+.2f} | {e.percent:+.1f} |"
                        )
            print(f"\nworst absolute error: {worst:.2f} MiB")
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
