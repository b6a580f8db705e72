"""What a token costs each server's CPU: LayerLab and llama-server at the same moment, each
with one core of its own.

    bench/setup_llama_server.sh            # once: builds build/llama-server/bin/llama-server
    .venv/bin/python bench/per_core.py [--reps 12] [--streams 4] [--max-tokens 128] [--whole]

Why this and not only parallel_streams.py: on a shared VM the machine's speed swings by
seconds, so two servers timed one after the other differ by ~9% a rep (sd) whatever they
are, and a 1% difference needs hundreds of reps. Here each server runs with one compute
thread, pinned with its own client to one core, and both answer their requests at the same
time, so a swing hits both; the cores swap every rep. The ratio of their totals then has an
sd of ~1.5% a rep. It says what LayerLab's path costs per token beside llama-server's (the
decoder's Python, the event loop, the sends) on the same kernels; it is not issue 14's
two-thread target, which parallel_streams.py measures.

Each thread's time on the CPU comes from /proc/<pid>/task/<tid>/schedstat: a server's
busiest thread computes (with one thread, llama.cpp computes in its caller's thread), the
rest serve HTTP. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from _spine_common import machine_note
from layerlab.core.demo_model import demo_model_path
from layerlab.core.load_plan import LoadPlan
from parallel_streams import run_streams, start_layerlab, start_llama_server
from tests.conftest import engine_pid

HERE = Path(__file__).resolve()


def client(args: argparse.Namespace) -> None:
    """One server's client, in a process of its own (pinned beside its server): a line in,
    one round of requests, a line out."""
    print("ready", flush=True)
    for _ in sys.stdin:
        total, res = run_streams(
            args.url, args.key, args.streams, args.max_tokens, streamed=not args.whole
        )
        errors = [r.error for r in res if r.error]
        print(json.dumps([total, sum(r.pieces for r in res), errors]), flush=True)


def tasks(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def pin(pids: list[int], core: int) -> None:
    for pid in pids:
        for tid in tasks(pid):
            with contextlib.suppress(OSError):  # a thread that ended in between
                os.sched_setaffinity(tid, {core})


def on_cpu(pid: int) -> dict[int, float]:
    """Seconds each thread of `pid` has run."""
    out = {}
    for tid in tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0]) / 1e9
        except OSError:
            continue
    return out


def process_cpu(pid: int) -> float:
    """Seconds the process has run, threads that have ended included."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def side_cpu(before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(the busiest thread's seconds, the other threads' seconds) between two readings."""
    d = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
    return (d[0], sum(d[1:])) if d else (0.0, 0.0)


def gm_interval(ratios: list[float]) -> str:
    logs = [math.log(x) for x in ratios]
    mid, se = statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs))
    return (
        f"{math.exp(mid):.3f} (95% interval {math.exp(mid - 1.96 * se):.3f}-"
        f"{math.exp(mid + 1.96 * se):.3f}; sd of a rep {statistics.stdev(logs) * 100:.1f}%)"
    )


def main_run(args: argparse.Namespace) -> None:
    if (os.cpu_count() or 1) < 2:
        sys.exit("this bench needs two cores: one for each server")
    model = str(demo_model_path())
    plan = LoadPlan(model, n_ctx=args.ctx, n_threads=1, parallel=args.slots, flash_attn=True)
    sup, ready = start_layerlab(plan)
    engine = engine_pid()
    server, base = start_llama_server(model, args.slots, args.ctx, 1, args.port, "on")
    sides = {"LayerLab": (engine, ready.url, sup.token), "llama-server": (server.pid, base, "x")}
    clients = {}
    rows = []
    try:
        for name, (_, url, key) in sides.items():
            cmd = [sys.executable, str(HERE), "--client", url, key]
            cmd += ["--streams", str(args.streams), "--max-tokens", str(args.max_tokens)]
            cmd += ["--whole"] if args.whole else []
            c = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert c.stdout is not None and c.stdout.readline().strip() == "ready", name
            clients[name] = c
        for rep in range(args.reps + 1):  # the first round warms each side on its core
            for i, (name, (pid, _, _)) in enumerate(sides.items()):
                pin([pid, clients[name].pid], (i + rep) % 2)
            time.sleep(0.3)
            before = {n: (on_cpu(p), process_cpu(clients[n].pid)) for n, (p, _, _) in sides.items()}
            for c in clients.values():
                assert c.stdin is not None
                c.stdin.write("go\n")
                c.stdin.flush()
            got = {n: json.loads(c.stdout.readline()) for n, c in clients.items()}  # type: ignore[union-attr]
            for n, (_, _, errors) in got.items():
                if errors:
                    sys.exit(f"{n}: {len(errors)} requests failed: {errors[0]}")
            if rep == 0:
                continue
            row = {"rep": rep, "LayerLab core": rep % 2}
            for n, (p, _, _) in sides.items():
                compute, serving = side_cpu(before[n][0], on_cpu(p))
                row[n] = {
                    "total": got[n][0],
                    "pieces": got[n][1],
                    "compute": compute,
                    "serving": serving,
                    "client": process_cpu(clients[n].pid) - before[n][1],
                }
            rows.append(row)
    finally:
        for c in clients.values():
            if c.stdin:
                c.stdin.close()
            c.wait(30)
        sup.stop()
        server.terminate()
        server.wait(10)
    report(args, rows)


def report(args: argparse.Namespace, rows: list[dict]) -> None:
    print(machine_note())
    how = "whole replies" if args.whole else "streamed"
    print(
        f"\n{args.streams} requests at once on each server, {how}, {args.max_tokens} greedy "
        f"tokens each, {args.slots} slots, 1 thread, each server and its client on a core of "
        "its own, both at the same moment (cores swap every rep)\n"
    )
    print(
        "| rep | LayerLab total | llama-server total | ratio | LayerLab compute / serving "
        "(s on CPU) | llama-server compute / serving |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["LayerLab"], r["llama-server"]
        print(
            f"| {r['rep']} | {a['total']:.2f} s | {b['total']:.2f} s | "
            f"{a['total'] / b['total']:.3f} | {a['compute']:.3f} / {a['serving']:.3f} | "
            f"{b['compute']:.3f} / {b['serving']:.3f} |"
        )
    for n in ("LayerLab", "llama-server"):
        med = {k: statistics.median(r[n][k] for r in rows) for k in rows[0][n]}
        per = med["pieces"] or 1
        print(
            f"{n}: median total {med['total']:.2f} s for {med['pieces']:.0f} tokens; on the CPU "
            f"a token: compute {med['compute'] / per * 1e6:.0f} µs, serving "
            f"{med['serving'] / per * 1e6:.0f} µs, client {med['client'] / per * 1e6:.0f} µs"
        )
    ratios = [r["LayerLab"]["total"] / r["llama-server"]["total"] for r in rows]
    if len(ratios) >= 3:
        print(f"total time LayerLab / llama-server, geometric mean of reps: {gm_interval(ratios)}")
    cpu = [
        (r["LayerLab"]["compute"] + r["LayerLab"]["serving"])
        / (r["llama-server"]["compute"] + r["llama-server"]["serving"])
        for r in rows
    ]
    if len(cpu) >= 3:
        print(f"server CPU a rep LayerLab / llama-server: {gm_interval(cpu)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--port", type=int, default=8795)
    ap.add_argument("--whole", action="store_true", help="whole replies, not streamed")
    ap.add_argument("--client", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        args.url, args.key = args.client
        client(args)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
