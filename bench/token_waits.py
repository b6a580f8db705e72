"""Time per token the head waits on each worker, next to tok/s; and what a plain relay costs.

    .venv/bin/python bench/token_waits.py [--runs 3] [--tokens 96] [--skip-relay]

1. Two paired (`--share`) workers on loopback, the demo model split 1:3 over them through
   the head's links. Per answer: generation tok/s, ms per token, and per worker the ms per
   token the head spent waiting on it (core/cluster/token_waits.py, what the Workers list
   shows).
2. The question behind plain workers: measuring them would mean putting a Python relay
   (relay.pump, the same loop the link uses, minus TLS) between llama.cpp and a worker it
   could otherwise reach directly. Direct vs relayed, interleaved, same worker.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

from _spine_common import PROMPT, machine_note, median
from layerlab.core.cluster import relay
from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.demo_model import demo_model_path
from layerlab.core.endpoint import Endpoint
from layerlab.core.engine.client import Delta, Finished
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.cluster.conftest import SharingWorker
from tests.conftest import WorkerProcess, free_port_pair


class PlainRelay:
    """127.0.0.1:P -> a plain worker, through relay.pump: what a metering hop would cost."""

    def __init__(self, target: str):
        self.target = Endpoint.parse(target)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stats: list[dict] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                local, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(local,), daemon=True).start()

    def _carry(self, local: socket.socket) -> None:
        with local, socket.create_connection((self.target.host, self.target.port)) as remote:
            relay.tune(local)
            relay.tune(remote)
            flow: dict = {}
            self.stats.append(flow)
            relay.pump(local, remote, flow)

    def close(self) -> None:
        self.sock.close()


def answer(sup: EngineSupervisor, tokens: int, links: HeadLinks | None = None):
    waits = links.answer_waits() if links else None
    done = None
    for ev in sup.client().stream_chat(PROMPT, temperature=0, seed=1, max_tokens=tokens):
        if isinstance(ev, Delta):
            if waits:
                waits.piece()
        elif isinstance(ev, Finished):
            done = ev
    assert done is not None
    per = waits.finish(done.timings) if waits else {}
    return done.timings, per


def load(plan: LoadPlan, links: HeadLinks | None = None) -> EngineSupervisor:
    sup = EngineSupervisor()
    if links:
        links.attach(sup)
    sup.start(plan)
    st = sup.wait_for((Ready, Failed), 120)
    assert isinstance(st, Ready), getattr(st, "message", st)
    return sup


def split_over_links(tmp: Path, runs: int, tokens: int) -> None:
    workers = [
        SharingWorker(tmp, name, f"127.0.0.1:{free_port_pair()}")
        for name in ("small-box", "big-box")
    ]
    links = HeadLinks(tmp / "head", name="bench")
    try:
        for w in workers:
            links.pair(w.address, w.code, w.fingerprint)
        addrs = [w.address for w in workers]
        plan = LoadPlan(
            str(demo_model_path()),
            n_ctx=1024,
            n_threads=1,
            devices=[DeviceRef.rpc(a) for a in addrs],
            tensor_split=[1, 3],
        )
        sup = load(plan, links)
        try:
            rows = []
            for i in range(runs):
                t, per = answer(sup, tokens, links)
                ms_tok = t["predicted_ms"] / max(t["predicted_n"], 1)
                rows.append((t["predicted_per_second"], ms_tok, per))
                waits = "  ".join(
                    f"{w.name} waits {per[a].ms_per_token:5.2f} ms/token"
                    for w, a in zip(workers, addrs, strict=True)
                )
                print(
                    f"run {i + 1}: gen {t['predicted_per_second']:6.1f} tok/s "
                    f"({ms_tok:5.2f} ms/token)  {waits}",
                    flush=True,
                )
        finally:
            sup.stop(quiet=True)
        gen = median([r[0] for r in rows])
        ms = median([r[1] for r in rows])
        waits = "  ".join(
            f"{w.name} {median([r[2][a].ms_per_token for r in rows]):5.2f}"
            for w, a in zip(workers, addrs, strict=True)
        )
        print(
            f"\nsplit 1:3 over two links: gen {gen:.1f} tok/s, {ms:.2f} ms/token; "
            f"waiting per token (ms): {waits}  (medians of {runs})\n"
        )
    finally:
        links.close_all()
        for w in workers:
            w.stop()


def relay_cost(tmp: Path, runs: int, tokens: int) -> None:
    w = WorkerProcess(free_port_pair(), tmp, threads=2)
    hop = PlainRelay(w.endpoint)
    model = str(demo_model_path())
    res: dict[str, list[float]] = {"direct": [], "relayed": []}
    waited: list[float] = []
    try:
        for i in range(runs):
            for name, ep in (("direct", w.endpoint), ("relayed", hop.endpoint)):
                sup = load(LoadPlan(model, n_ctx=1024, devices=[DeviceRef.rpc(ep)]))
                try:
                    mark = sum(f.get("waited", 0.0) for f in hop.stats)
                    t, _ = answer(sup, tokens)
                finally:
                    sup.stop(quiet=True)
                    w.wait_idle()
                res[name].append(t["predicted_per_second"])
                line = f"run {i + 1} {name:8s}: gen {t['predicted_per_second']:6.1f} tok/s"
                if name == "relayed":
                    after = sum(f.get("waited", 0.0) for f in hop.stats)
                    w_ms = (after - mark) * 1000 / max(t["predicted_n"], 1)
                    waited.append(w_ms)
                    line += (
                        f"  ({t['predicted_ms'] / t['predicted_n']:.2f} ms/token, "
                        f"waits {w_ms:.2f} ms/token incl. prompt)"
                    )
                print(line, flush=True)
                time.sleep(0.3)
    finally:
        hop.close()
        w.stop()
    d, r = median(res["direct"]), median(res["relayed"])
    print(
        f"\none plain worker, all layers: direct {d:.1f} tok/s, through a Python relay "
        f"{r:.1f} tok/s, relayed/direct {r / d:.3f}  (medians of {runs})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--skip-relay", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ll-waits-"))
    split_over_links(tmp, a.runs, a.tokens)
    if not a.skip_relay:
        relay_cost(tmp, a.runs, a.tokens)
    print(f"({a.tokens} greedy tokens, SmolLM2-135M Q4_1; {machine_note()})")


if __name__ == "__main__":
    main()
