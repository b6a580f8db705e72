"""RPC split: prompt and generation tok/s for the demo model run locally, on one loopback
worker, and split 1:2 over two loopback workers, interleaved, as ratios to local.
Target: two workers >= 0.90 of local.

    .venv/bin/python bench/rpc_split.py [--runs 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _spine_common import N_TOKENS, PROMPT, machine_note, median
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Delta, Finished
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.conftest import WorkerProcess, free_port_pair

# a longer prompt so prompt tok/s means something
LONG_PROMPT = [
    {
        "role": "user",
        "content": " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
        + " Summarise that.",
    }
]


def measure(sup: EngineSupervisor) -> tuple[float, float]:
    client = sup.client()
    # a fresh prompt each time: no prefix cache, so prompt speed is measured
    done = None
    for ev in client.stream_chat(LONG_PROMPT, temperature=0, max_tokens=N_TOKENS, seed=1):
        if isinstance(ev, Finished):
            done = ev
    for ev in client.stream_chat(PROMPT, temperature=0, max_tokens=N_TOKENS, seed=1):
        if isinstance(ev, Finished):
            gen = ev
        assert isinstance(ev, Delta | Finished)
    return done.timings["prompt_per_second"], gen.timings["predicted_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    w1 = WorkerProcess(free_port_pair(), tmp, threads=args.threads)
    w2 = WorkerProcess(free_port_pair(), tmp, threads=args.threads)
    model = str(demo_model_path())
    configs = {
        "local": LoadPlan(model, n_ctx=2048, n_threads=args.threads),
        "one worker": LoadPlan(model, n_ctx=2048, devices=[DeviceRef.rpc(w1.endpoint)]),
        "two workers 1:2": LoadPlan(
            model,
            n_ctx=2048,
            devices=[DeviceRef.rpc(w1.endpoint), DeviceRef.rpc(w2.endpoint)],
            tensor_split=[1, 2],
        ),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    try:
        for _ in range(args.runs):
            for name, plan in configs.items():
                sup = EngineSupervisor()
                sup.start(plan)
                state = sup.wait_for((Ready, Failed), 90)
                assert isinstance(state, Ready), state
                try:
                    results[name].append(measure(sup))
                finally:
                    sup.stop()
                    for w in (w1, w2):
                        w.wait_idle()
    finally:
        w1.stop()
        w2.stop()
    base_p = median([p for p, _ in results["local"]])
    base_g = median([g for _, g in results["local"]])
    print(
        f"RPC split, demo model, {N_TOKENS} greedy tokens, {args.threads} threads per process, "
        f"median of {args.runs} interleaved runs"
    )
    print(
        f"  {'configuration':<18} {'prompt tok/s':>13} {'ratio':>6} {'gen tok/s':>10} {'ratio':>6}"
    )
    for name, rs in results.items():
        p, g = median([x for x, _ in rs]), median([y for _, y in rs])
        print(f"  {name:<18} {p:13.1f} {p / base_p:6.3f} {g:10.1f} {g / base_g:6.3f}")
    print("  target: two workers >= 0.90 of local (generation)")
    print(f"  {machine_note()}")


if __name__ == "__main__":
    main()
