"""Grammar-constrained generation vs unconstrained, side by side, through the engine's API
on the demo model: generation tok/s from llama.cpp's own timings (predicted_per_second) for
the same prompt, greedy, with no constraint, with response_format json_schema, and with a
forced tool call. Runs are interleaved so all see the same machine load; ratios printed.

Each round is printed as it ends, and no new round starts once --budget-s has passed (at
least one always runs), so the defaults finish in about two minutes even on 2 busy cores
(a grammar-held token costs several times a free one there).

    .venv/bin/python bench/grammar_speed.py [--runs 5] [--tokens 32] [--budget-s 60]
"""

from __future__ import annotations

import argparse
import subprocess
import time

import httpx

from _spine_common import median
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import LoadPlan

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "lines": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "lines"],
}
TOOL = {
    "type": "function",
    "function": {
        "name": "write_poem",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "text": {"type": "string"}},
            "required": ["title", "text"],
        },
    },
}
PROMPT = [{"role": "user", "content": "Write a long poem about the sea, as JSON."}]
KINDS = {
    "unconstrained": {},
    "json_schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    },
    "tool call": {"tools": [TOOL], "tool_choice": "required"},
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except OSError:
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument(
        "--budget-s", type=float, default=60.0, help="start no new round after this long"
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    began = time.monotonic()
    print(f"CPU: {cpu_name()}; {args.threads} threads; loading the demo model", flush=True)
    sup = EngineSupervisor()
    sup.start(LoadPlan(str(demo_model_path()), n_ctx=1024, n_threads=args.threads))
    ready = sup.wait_for((Ready, Failed), 120)
    assert isinstance(ready, Ready), ready
    speeds: dict[str, list[float]] = {k: [] for k in KINDS}
    tokens: dict[str, list[int]] = {k: [] for k in KINDS}
    try:
        with httpx.Client(timeout=300, trust_env=False) as http:
            measuring = time.monotonic()
            for run in range(args.runs):
                if run and time.monotonic() - measuring > args.budget_s:
                    print(f"(stopping after {run} rounds: --budget-s {args.budget_s:g})")
                    break
                for kind, extra in KINDS.items():
                    body = {
                        "messages": PROMPT,
                        "temperature": 0,
                        "max_tokens": args.tokens,
                        # the budget is the same for all: no stop at the JSON's end
                        **extra,
                    }
                    r = http.post(
                        ready.url + "/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {sup.token}"},
                    ).json()
                    speeds[kind].append(r["timings"]["predicted_per_second"] or 0.0)
                    tokens[kind].append(r["usage"]["completion_tokens"])
                print(
                    f"round {run + 1}: "
                    + ", ".join(f"{k} {speeds[k][-1]:.1f}" for k in KINDS)
                    + " tok/s",
                    flush=True,
                )
    finally:
        sup.stop()
    base = median(speeds["unconstrained"])
    rounds = len(speeds["unconstrained"])
    print(f"{rounds} rounds of {args.tokens} tokens, medians; {time.monotonic() - began:.0f} s")
    print(f"{'kind':<15} {'tok/s':>8} {'tokens':>7} {'ratio':>6}")
    for kind in KINDS:
        s = median(speeds[kind])
        print(
            f"{kind:<15} {s:8.1f} {median([float(t) for t in tokens[kind]]):7.0f} "
            f"{(s / base if base else 0):6.2f}"
        )


if __name__ == "__main__":
    main()
