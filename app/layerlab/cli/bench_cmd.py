"""Measure a model's splits side by side, llama-bench style, headless.

Each configuration loads in its own engine process, warms up, measures pp and tg with random
tokens, and unloads; configurations that do not fit or fail are listed with the reason. The
planner's forecast and its error stand beside each measured figure, and the speed model keeps
what it saw for the next forecast.

    layerlab bench                                   # the demo model, this machine, pp512/tg128
    layerlab bench MODEL.gguf --workers 10.0.0.5:50052 --configs strategies,subsets,splits
    layerlab bench --configs threads=1:2 --reps 3 --json > results.json
"""

from __future__ import annotations

import argparse
import signal
import sys

HELP = "measure splits side by side (pp512 / tg128), with the planner's forecast beside them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, help="a GGUF file (default: the demo model)")
    p.add_argument("--workers", default="", help="comma-separated host:port of workers")
    p.add_argument(
        "--configs",
        default="",
        help="what to compare, comma-separated: strategies, subsets, splits, modes, "
        "threads=1:2:4 (default: the planner's pick alone)",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions of each test (default 5)")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (default 512)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (default 128)")
    p.add_argument("--no-learn", action="store_true", help="do not keep the measured figures")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="llama-bench's JSON (-o json)")
    out.add_argument("--md", action="store_true", help="a Markdown table (the default)")
    out.add_argument("--csv", action="store_true", help="CSV, one row per configuration")


def run(args: argparse.Namespace) -> int:
    from layerlab.core.bench import BenchChoices, BenchRun, BenchRunner, BenchSettings
    from layerlab.core.bench.configs import bench_context, comparisons
    from layerlab.core.bench.export import FORMATS
    from layerlab.core.gguf import GGUFError
    from layerlab.core.planner.calibration import Calibration
    from layerlab.core.planner.inputs import (
        PlanInputError,
        open_facts,
        this_machine_devices,
        worker_devices,
    )
    from layerlab.core.planner.planner import Planner

    try:
        if args.model is None:
            from layerlab.core.demo_model import demo_model_path

            args.model = str(demo_model_path())
        if args.reps < 1 or args.n_prompt < 0 or args.n_gen < 0 or args.n_prompt + args.n_gen < 1:
            raise PlanInputError("--reps must be at least 1, and the test must have tokens")
        choices = BenchChoices.parse(args.configs)
        if not args.configs:
            choices = BenchChoices(strategies=False, subsets=False)
        facts = open_facts(args.model)
        devices = this_machine_devices() + worker_devices(args.workers)
        planner = Planner(facts, args.model)
        planner.speed_model.calibration = Calibration.load()
        configs = comparisons(planner, devices, choices, bench_context(args.n_prompt, args.n_gen))
    except (GGUFError, PlanInputError, ValueError, OSError) as e:
        print(f"layerlab bench: {e}", file=sys.stderr)
        return 2
    runner = BenchRunner()
    settings = BenchSettings(args.n_prompt, args.n_gen, args.reps, learn=not args.no_learn)
    bench_run = BenchRun(
        args.model,
        facts.name,
        model_size=facts.file_size,
        model_n_params=facts.parameters,
        model_type=" ".join(x for x in (facts.architecture, facts.size_label, facts.quant) if x),
    )

    def say(event) -> None:
        if getattr(event, "fraction", None) == 1.0:
            row = event.row
            tg = f"{row.tg[0]:.1f} tok/s" if row.tg[0] else row.reason
            print(f"  {row.name}: {row.status}, {tg}", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, lambda *_: runner.cancel())  # Ctrl+C: stop cleanly
    try:
        print(f"Measuring {len(configs)} configuration(s)...", file=sys.stderr, flush=True)
        result = runner.run(bench_run, configs, settings, say)
    finally:
        signal.signal(signal.SIGINT, previous)
    fmt = "json" if args.json else "csv" if args.csv else "md"
    sys.stdout.write(FORMATS[fmt](result))
    if result.cancelled:
        print("layerlab bench: cancelled.", file=sys.stderr)
        return 130
    return 0 if result.measured else 1
