"""Plan a model over this machine's devices (or a recorded rig) and workers, without loading.

Prints per device the layers, bytes of weights, KV cache and compute buffers, the verdict,
and the predicted prompt and generation speed; --json prints the plan for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "show where a model's layers would go and whether it fits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="a GGUF file (the first part of a split model), or "
        "hf://OWNER/REPO/FILE.gguf to read only its header from the hub",
    )
    p.add_argument(
        "--ctx",
        type=int,
        default=None,
        help="context size (default: 4096, or the trained context if smaller)",
    )
    p.add_argument("--workers", default="", help="comma-separated host:port of workers")
    p.add_argument(
        "--strategy",
        default="fastest",
        choices=["fastest", "proportional", "manual"],
        help="fastest (default), proportional (llama.cpp's default), manual",
    )
    p.add_argument("--ratios", default="", help="manual: comma-separated shares, device order")
    p.add_argument(
        "--reserve",
        action="append",
        default=[],
        metavar="DEVICE=GiB",
        help="keep this much free on a device, e.g. CUDA0=2 (repeatable)",
    )
    p.add_argument("--exclude", default="", help="comma-separated device labels to leave out")
    p.add_argument(
        "--cache-type",
        default="f16",
        choices=["f16", "q8_0", "q4_0"],
        help="KV cache type for K and V",
    )
    p.add_argument("--no-fit", action="store_true", help="do not move layers or shrink context")
    p.add_argument(
        "--rig",
        default=None,
        help="plan for a recorded machine (tests/fixtures/rigs format) instead of this one",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from layerlab.core.gguf import GGUFError
    from layerlab.core.planner.calibration import Calibration
    from layerlab.core.planner.inputs import PlanInputError, plan_from_args

    try:
        result = plan_from_args(
            model=args.model,
            ctx=args.ctx,
            workers=args.workers,
            strategy=args.strategy,
            ratios=args.ratios,
            reserves=args.reserve,
            exclude=args.exclude,
            cache_type=args.cache_type,
            fit=not args.no_fit,
            rig=args.rig,
            calibration=Calibration.load(),  # what was measured here, not only constants
        )
    except (GGUFError, PlanInputError, ValueError) as e:
        print(f"layerlab plan: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # words, not "[Errno 13] ..."
        why = (e.strerror or str(e)).lower()
        print(f"layerlab plan: cannot read {e.filename or args.model}: {why}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        from layerlab.core.planner.report import text_report

        print(text_report(result))
    return 0 if result.verdict != "does not fit" else 1
