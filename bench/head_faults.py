"""How fast the head notices and recovers from faults, on the demo model.

Prints, per fault, the seconds from the fault to the head's report and to the model being
ready again (median over --runs): an engine killed (kill -9), an engine frozen (SIGSTOP), a
worker killed mid-use (the head leaves it out and loads again), and that worker restarted
(the head takes it back). Run: .venv/bin/python bench/head_faults.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.conftest import WorkerProcess, engine_pid, free_port_pair


def load(head: Head, plan: LoadPlan) -> None:
    """Load and wait for it (head.load returns at once; the state changes on its lane)."""
    before = head.state
    head.load(plan)
    until(lambda: head.state is not before and isinstance(head.state, Ready))


def until(predicate, timeout: float = 90) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.005)
    return time.monotonic()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = str(demo_model_path())
    rows: dict[str, list[tuple[float, float]]] = {}

    head = Head(
        persist=False,
        state_dir=tmp / "head",
        automatic=True,
        use_returning=True,
        return_check_s=0.5,
        watch=WatchSettings(),
    )
    try:
        for _ in range(args.runs):
            for fault, sig in (
                ("engine kill -9", signal.SIGKILL),
                ("engine SIGSTOP", signal.SIGSTOP),
            ):
                load(head, LoadPlan(model, n_ctx=512))
                n = len(head.incidents)
                pid = engine_pid()
                t0 = time.monotonic()
                os.kill(pid, sig)
                told = until(lambda n=n: len(head.incidents) > n, 20) - t0
                back = until(lambda p=pid: isinstance(head.state, Ready) and engine_pid() != p) - t0
                if sig == signal.SIGSTOP and psutil.pid_exists(pid):
                    os.kill(pid, signal.SIGCONT)
                rows.setdefault(fault, []).append((told, back))

            port = free_port_pair()
            worker = WorkerProcess(port, tmp)
            head.add_worker(worker.endpoint)
            head.load(
                LoadPlan(
                    model, n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)], tensor_split=[1]
                )
            )
            until(lambda: isinstance(head.state, Ready) and head.state.plan.workers)
            n = len(head.incidents)
            t0 = time.monotonic()
            worker.kill()
            told = until(lambda n=n: len(head.incidents) > n) - t0
            back = until(lambda: isinstance(head.state, Ready) and not head.state.plan.workers) - t0
            rows.setdefault("worker kill -9 (left out)", []).append((told, back))
            worker.stop()
            t0 = time.monotonic()
            worker = WorkerProcess(port, tmp)
            took = until(lambda: isinstance(head.state, Ready) and head.state.plan.workers) - t0
            rows.setdefault("worker restarted (taken back)", []).append((took, took))
            head.remove_worker(worker.endpoint)
            head.unload()
            worker.stop()
    finally:
        head.close()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; medians of {args.runs} runs")
    print(f"{'fault':32} {'reported (s)':>13} {'ready again (s)':>16}")
    for fault, values in rows.items():
        told = statistics.median(v[0] for v in values)
        back = statistics.median(v[1] for v in values)
        print(f"{fault:32} {told:13.2f} {back:16.2f}")


if __name__ == "__main__":
    main()
