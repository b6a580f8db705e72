"""The encrypted link's cost: plain llama.cpp RPC vs the same worker behind LayerLab's link.

    python bench/cluster_link.py [--runs 3] [--tokens 64]

Two workers on this machine's loopback, same settings: one plain (`layerlab worker`), one
sharing (`--share`, reached through the head's loopback forwarder: two TLS hops in Python).
Each run loads the demo model through the real engine and supervisor, answers one greedy
prompt, and reads llama.cpp's own timings. Runs alternate between the two so machine noise
hits both. Prints medians side by side, and model load over the link, first and cached.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from layerlab.core.cluster import link
from layerlab.core.cluster.forwarder import LinkForwarder
from layerlab.core.cluster.identity import TrustStore, load_or_create_identity
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Finished
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan

PROMPT = [{"role": "user", "content": "Explain in detail how a steam engine works, step by step."}]


def start_worker(args: list[str], tmp: Path, name: str) -> tuple[subprocess.Popen, dict]:
    log = open(tmp / f"{name}.log", "w+")  # noqa: SIM115 (lives as long as the worker)
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerlab.cli.main", "worker", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read()
        events = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
        codes = [e["code"] for e in events if e.get("event") == "pairing_code"]
        if codes or "ready on" in text:
            return proc, {"code": codes[-1] if codes else None}
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start")


def one_run(endpoint: str, tokens: int) -> dict:
    plan = LoadPlan(str(demo_model_path()), n_ctx=1024, devices=[DeviceRef.rpc(endpoint)])
    sup = EngineSupervisor()
    t0 = time.perf_counter()
    sup.start(plan)
    st = sup.wait_for((Ready, Failed), 120)
    load_s = time.perf_counter() - t0
    assert isinstance(st, Ready), getattr(st, "message", st)
    try:
        done = None
        for ev in sup.client().stream_chat(PROMPT, temperature=0, seed=1, max_tokens=tokens):
            if isinstance(ev, Finished):
                done = ev
        assert done is not None
        t = done.timings
        return {"gen": t["predicted_per_second"], "prompt": t["prompt_per_second"], "load": load_s}
    finally:
        sup.stop(quiet=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ll-bench-"))
    common = ["--threads", str(a.threads)]
    plain, _ = start_worker(
        ["--listen", "127.0.0.1:47652", *common, "--cache-dir", str(tmp / "cache-plain")],
        tmp,
        "plain",
    )
    shared, info = start_worker(
        [
            "--listen",
            "127.0.0.1:47662",
            *common,
            "--cache-dir",
            str(tmp / "cache-shared"),
            "--share",
            "--share-on",
            "127.0.0.1:47660",
            "--no-announce",
            "--json-events",
            "--state-dir",
            str(tmp / "w"),
        ],
        tmp,
        "shared",
    )
    try:
        head = load_or_create_identity(tmp / "head", "bench")
        peer = link.pair(head, TrustStore(tmp / "head"), "127.0.0.1:47660", info["code"])
        with LinkForwarder(head, peer) as fwd:
            results: dict[str, list[dict]] = {"plain RPC": [], "TLS link": []}
            for i in range(a.runs):
                for name, ep in (("plain RPC", "127.0.0.1:47652"), ("TLS link", fwd.endpoint)):
                    r = one_run(ep, a.tokens)
                    results[name].append(r)
                    print(
                        f"run {i + 1} {name:9s}: gen {r['gen']:6.1f} tok/s  prompt "
                        f"{r['prompt']:7.1f} tok/s  load {r['load']:.2f} s",
                        flush=True,
                    )
                    time.sleep(0.3)
            print()
            med = {
                k: {m: statistics.median(x[m] for x in v) for m in ("gen", "prompt")}
                for k, v in results.items()
            }
            p, t = med["plain RPC"], med["TLS link"]
            print(f"{'':24s}{'plain RPC':>12s}{'TLS link':>12s}{'link/plain':>12s}")
            for m, label in (("gen", "generation tok/s"), ("prompt", "prompt tok/s")):
                print(f"{label:24s}{p[m]:12.1f}{t[m]:12.1f}{t[m] / p[m]:12.3f}")
            loads = [r["load"] for r in results["TLS link"]]
            plain_loads = [r["load"] for r in results["plain RPC"]]
            print(
                f"{'model load, first (s)':24s}{plain_loads[0]:12.2f}{loads[0]:12.2f}"
                f"{loads[0] / plain_loads[0]:12.3f}"
            )
            if len(loads) > 1:
                pc, tc = statistics.median(plain_loads[1:]), statistics.median(loads[1:])
                print(f"{'model load, cached (s)':24s}{pc:12.2f}{tc:12.2f}{tc / pc:12.3f}")
            print(
                f"\n(medians of {a.runs}; {a.tokens} greedy tokens; SmolLM2-135M Q4_1 on CPU "
                f"workers with {a.threads} threads; loads include engine start)"
            )
    finally:
        for p in (plain, shared):
            p.terminate()
            p.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
