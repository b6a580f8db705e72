"""The speed model against the engine: predicted generation tok/s vs measured for the demo
model on this machine, local and over one and two loopback workers, before and after one
calibration (issue 12's target: within 20 % after it).

Round 1 forecasts with the constants, measures each configuration (the bench's own runner:
one engine per configuration, llama-bench's tg with random tokens) and records what it saw
in a private calibration file. Round 2 forecasts again with those figures and measures
again: the error printed for it is against a fresh measurement, not the one it learned from.

    .venv/bin/python bench/speed_model.py [--reps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _spine_common import machine_note  # noqa: E402
from layerlab.core.bench import BenchProgress, BenchRun, BenchRunner, BenchSettings  # noqa: E402
from layerlab.core.bench.configs import BenchConfig, bench_context  # noqa: E402
from layerlab.core.cluster.worker_check import probe  # noqa: E402
from layerlab.core.demo_model import demo_model_path  # noqa: E402
from layerlab.core.gguf import check_model_file  # noqa: E402
from layerlab.core.planner.calibration import Calibration  # noqa: E402
from layerlab.core.planner.devices import devices_from_probe  # noqa: E402
from layerlab.core.planner.inputs import this_machine_devices  # noqa: E402
from layerlab.core.planner.planner import Planner, PlanOptions  # noqa: E402
from tests.conftest import WorkerProcess, free_port_pair  # noqa: E402

N_PROMPT, N_GEN = 64, 128


_said: list[str] = [""]


def progress(event) -> None:
    """Where the run is, on stderr (a loaded machine makes a round take minutes)."""
    if isinstance(event, BenchProgress):
        line = f"  {event.row.name}: {event.stage}"
        if line != _said[0]:
            _said[0] = line
            print(line, file=sys.stderr, flush=True)


def configs(planner: Planner, devices, workers, threads: int) -> list[BenchConfig]:
    a, b = (f"RPC {w.endpoint}" for w in workers)
    out = []
    for name, ratios in [
        ("local (CPU)", {}),
        ("one loopback worker", {a: 1.0}),
        ("two loopback workers 1:2", {a: 10.0, b: 21.0}),
    ]:
        others = {d.label for d in devices if not d.is_host and d.label not in ratios}
        opts = PlanOptions(
            strategy="manual" if ratios else "fastest",
            ratios=ratios,
            excluded=others,
            n_ctx=bench_context(N_PROMPT, N_GEN),
            n_threads=threads,
        )
        r = planner.plan(devices, opts)
        out.append(
            BenchConfig(name, r.plan, "split", r.speed.prompt_tps, r.speed.generation_tps, "", r)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="head and each worker")
    args = ap.parse_args()
    model = str(demo_model_path())
    facts = check_model_file(model)
    settings = BenchSettings(n_prompt=N_PROMPT, n_gen=N_GEN, reps=args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        cal_path = Path(tmp) / "speed-calibration.json"
        workers = [WorkerProcess(free_port_pair(), Path(tmp), threads=args.threads) for _ in "ab"]
        try:
            host = [d for d in this_machine_devices() if d.is_host]
            devices = host + [d for w in workers for d in devices_from_probe(probe(w.endpoint))]
            runner = BenchRunner(calibration_path=cal_path)
            before = runner.run(
                BenchRun(model, facts.name),
                configs(Planner(facts, model), devices, workers, args.threads),
                settings,
                progress,
            )
            learned = before.learned
            taught = Planner(facts, model, Calibration.load(cal_path))
            after = runner.run(
                BenchRun(model, facts.name),
                configs(taught, devices, workers, args.threads),
                BenchSettings(N_PROMPT, N_GEN, args.reps, learn=False),
                progress,
            )
        finally:
            for w in workers:
                w.stop()
    print(f"# Speed model vs measured: {facts.name}, tg{N_GEN}, {args.threads} threads")
    print(machine_note())
    print("recorded by round 1: " + "; ".join(learned or ["nothing"]))
    print()
    print("| configuration | before: predicted | measured | error ", end="")
    print("| after: predicted | measured | error |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for r1, r2 in zip(before.rows, after.rows, strict=True):
        cells = [r1.name]
        for r in (r1, r2):
            tg = r.tg[0]
            if r.status != "measured" or not tg:
                cells += [f"{r.config.predicted_tg or 0:.1f}", r.reason or r.status, "-"]
                continue
            err = (r.config.predicted_tg or 0) / tg - 1
            cells += [
                f"{r.config.predicted_tg:.1f}",
                f"{tg:.1f} ± {r.tg[1] or 0:.1f}",
                f"{err:+.0%}",
            ]
        if r2.status == "measured" and r2.tg[0]:
            worst = max(worst, abs((r2.config.predicted_tg or 0) / r2.tg[0] - 1))
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"worst error after calibration: {worst:.0%} (target: within 20 %)")


if __name__ == "__main__":
    main()
