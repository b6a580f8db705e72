"""Greedy tokens picked on the worker that holds the output layer, against picked on the head:
a worker in a network namespace behind a rate-limited link (a home LAN's 1 Gbit by default),
the same greedy requests alternating between two loads of the demo model that differ only in
`greedy_on_device`. Prints ms between tokens, the bytes that came back from the worker per
token, and the ratio of the two times. Needs root (ip netns, tc).

    sudo .venv/bin/python bench/greedy_on_device.py [--rate 1gbit] [--streams 4] [--reps 6]

Target: on the worker <= on the head, with the bytes a token down from n_vocab * 4 to a few.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _spine_common import machine_note
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.batching.helpers import QUESTIONS, bytes_received_from, together
from tests.conftest import wait_idle

NS, HOST_IF, NS_IF = "llbench-w", "llbench-h", "llbench-w0"
HEAD_IP, WORKER_IP, PORT = "10.232.0.1", "10.232.0.2", 50070


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def make_link(rate: str) -> None:
    """A namespace for the worker, joined to this one by a veth pair limited to `rate` each way."""
    sh("ip", "netns", "del", NS, check=False)  # what an interrupted run left
    sh("ip", "link", "del", HOST_IF, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HEAD_IP}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "-n", NS, "addr", "add", f"{WORKER_IP}/24", "dev", NS_IF)
    sh("ip", "-n", NS, "link", "set", NS_IF, "up")
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    # a burst of 128 KB: a 196 KB row of logits cannot slip through at the veth's own speed
    shape = ["root", "tbf", "rate", rate, "burst", "128kb", "latency", "50ms"]
    sh("tc", "qdisc", "add", "dev", HOST_IF, *shape)
    sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", NS_IF, *shape)


def drop_link() -> None:
    for pid in sh("ip", "netns", "pids", NS, check=False).stdout.split():
        sh("kill", "-9", pid, check=False)
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)


def start_worker(threads: int, log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 (the worker's for its life)
    cmd = ["ip", "netns", "exec", NS, sys.executable, "-m", "layerlab.cli.main", "worker"]
    cmd += ["--listen", f"{WORKER_IP}:{PORT}", "--allow-lan", "--threads", str(threads)]
    cmd += ["--cache-dir", ""]  # the namespace is this run's own LAN
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "ready on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the worker did not start: {log.read_text()}")
        time.sleep(0.05)
    return proc


def one_run(plan: LoadPlan, streams: int, tokens: int) -> tuple[float, float]:
    """(ms between tokens, median over the streams; bytes from the worker a token)."""
    sup = EngineSupervisor()
    sup.start(plan)
    state = sup.wait_for((Ready, Failed), 120)
    if not isinstance(state, Ready):
        sys.exit(f"the engine did not load: {state}")
    try:
        together(state.url, sup.token, QUESTIONS[:streams], 4)  # first graphs, reservations
        before = bytes_received_from(WORKER_IP, PORT)
        done = together(state.url, sup.token, QUESTIONS[:streams], tokens)
        got = bytes_received_from(WORKER_IP, PORT) - before
        errors = [str(s.error) for s in done if s.error]
        if errors:
            sys.exit(f"an answer failed: {errors[0]}")
        gaps = [(s.ended - s.first_token) / max(1, s.tokens - 1) * 1000 for s in done]
        return statistics.median(gaps), got / sum(s.tokens for s in done)
    finally:
        sup.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="1gbit", help="the link's rate each way (tc's units)")
    ap.add_argument("--streams", type=int, default=4, help="answers at once (1-4)")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("this bench needs root: it makes a network namespace and shapes its link")
    make_link(args.rate)
    endpoint = f"{WORKER_IP}:{PORT}"
    worker = start_worker(args.threads, Path(tempfile.mkdtemp()) / "worker.log")
    model = str(demo_model_path())

    def plan(on_device: bool) -> LoadPlan:
        return LoadPlan(
            model,
            n_ctx=1024,
            n_threads=args.threads,
            parallel=4,
            devices=[DeviceRef.rpc(endpoint)],
            greedy_on_device=on_device,
        )

    rows: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    try:
        for rep in range(args.reps):
            for on in (True, False) if rep % 2 == 0 else (False, True):
                rows[on].append(one_run(plan(on), args.streams, args.tokens))
                try:
                    wait_idle(endpoint)
                except TimeoutError as e:
                    sys.exit(str(e))
    finally:
        worker.kill()
        drop_link()
    print(machine_note())
    print(
        f"\nthe demo model (vocabulary 49,152) on one worker behind a {args.rate} link, "
        f"{args.streams} greedy answers at once, {args.tokens} tokens, {args.reps} reps each\n"
    )
    print("| greedy token picked | ms between tokens (median of reps) | bytes a token |")
    print("|---|---|---|")
    for on, name in ((True, "on the worker"), (False, "on the head")):
        ms = statistics.median(r[0] for r in rows[on])
        b = statistics.median(r[1] for r in rows[on])
        print(f"| {name} | {ms:.1f} | {b:,.0f} |")
    logs = [math.log(a[0] / b[0]) for a, b in zip(rows[True], rows[False], strict=True)]
    mean = statistics.mean(logs)
    half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    print(
        f"\nms between tokens, on the worker / on the head: geometric mean "
        f"{math.exp(mean):.3f} (95% {math.exp(mean - half):.3f}-{math.exp(mean + half):.3f}); "
        "target <= 1.00"
    )


if __name__ == "__main__":
    main()
