"""A head inside a test namespace: reads one JSON command a line, answers one JSON line.

Started by tests/cluster/conftest.py (HeadAgent) with `ip netns exec`. It uses the real
parts a head uses: discovery, pairing, the loopback forwarder and heartbeat watch, and the
engine supervisor with a LoadPlan that names the forwarders' endpoints.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path

from layerlab.core.cluster import discovery, link
from layerlab.core.cluster.forwarder import LinkForwarder, WorkerWatch
from layerlab.core.cluster.identity import TrustStore, load_or_create_identity
from layerlab.core.cluster.probe import probe
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Delta
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import DeviceRef, LoadPlan

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


class Head:
    def __init__(self, state_dir: str, name: str):
        self.identity = load_or_create_identity(Path(state_dir), name)
        self.trust = TrustStore(Path(state_dir))
        self.forwarders: dict[str, LinkForwarder] = {}
        self.watches: dict[str, WorkerWatch] = {}
        self.watch_events: list[dict] = []
        self.sup: EngineSupervisor | None = None
        self.states: list[dict] = []
        self.answer_thread: threading.Thread | None = None
        self.answer_result: dict = {}

    def browse(self, seconds: float, want: int) -> dict:
        found = discovery.browse(seconds, until=lambda ws: len(ws) >= want)
        return {
            "workers": [
                {
                    "name": w.name,
                    "address": str(w.address),
                    "fp": w.fingerprint,
                    "link": w.link_protocol,
                    "rpc": w.rpc_protocol,
                }
                for w in found
            ]
        }

    def pair(self, address: str, code: str, fp: str | None = None) -> dict:
        try:
            peer = link.pair(self.identity, self.trust, address, code, fp)
        except link.LinkError as e:
            return {"ok": False, "kind": e.kind, "problem": e.problem}
        return {"ok": True, "name": peer.name, "fingerprint": peer.fingerprint}

    def forward(self, fingerprint: str) -> dict:
        peer = self.trust.worker(fingerprint)
        assert peer is not None, "not paired"
        fwd = self.forwarders.get(fingerprint)
        if fwd is None:
            fwd = self.forwarders[fingerprint] = LinkForwarder(self.identity, peer).start()

            def on_change(st, fp=fingerprint) -> None:
                self.watch_events.append(
                    {
                        "fp": fp,
                        "state": st.state,
                        "kind": st.kind,
                        "t": time.monotonic(),
                        "problem": st.problem,
                    }
                )

            self.watches[fingerprint] = WorkerWatch(
                self.identity, peer, on_change, retry_s=0.5
            ).start()
        return {"endpoint": fwd.endpoint}

    def probe(self, endpoint: str) -> dict:
        r = probe(endpoint)
        return {"ok": r.ok, "kind": r.kind, "problem": r.problem}

    def load(self, endpoints: list[str], split: list[float], n_ctx: int = 1024) -> dict:
        self.stop_engine()
        plan = LoadPlan(
            str(demo_model_path()),
            n_ctx=n_ctx,
            n_threads=1,
            devices=[DeviceRef.rpc(e) for e in endpoints],
            tensor_split=split,
        )
        self.states = []
        self.sup = EngineSupervisor(
            on_state=lambda s: self.states.append(
                {
                    "t": time.monotonic(),
                    "type": type(s).__name__,
                    "message": getattr(s, "message", ""),
                }
            ),
            watch=WatchSettings(interval_s=0.5, worker_silence_s=3.0),
        )
        t0 = time.monotonic()
        self.sup.start(plan)
        st = self.sup.wait_for((Ready, Failed), 120)
        if not isinstance(st, Ready):
            return {"ok": False, "message": getattr(st, "message", str(st))}
        return {"ok": True, "layers": st.placement.layer_devices, "load_s": time.monotonic() - t0}

    def answer(self, max_tokens: int) -> dict:
        assert self.sup is not None
        text, n = [], 0
        try:
            for ev in self.sup.client().stream_chat(
                PROMPT, temperature=0, seed=42, max_tokens=max_tokens
            ):
                if isinstance(ev, Delta):
                    text.append(ev.text)
                    n += 1
                    self.answer_result["last_token_t"] = time.monotonic()
        except Exception as e:  # the engine died under us: that is what fault tests expect
            return {"text": "".join(text), "error": f"{type(e).__name__}: {e}", "n": n}
        return {"text": "".join(text), "n": n}

    def answer_start(self, max_tokens: int) -> dict:
        self.answer_result = {}

        def run() -> None:
            self.answer_result.update(self.answer(max_tokens))
            self.answer_result["done_t"] = time.monotonic()

        self.answer_thread = threading.Thread(target=run, daemon=True)
        self.answer_thread.start()
        while "last_token_t" not in self.answer_result and self.answer_thread.is_alive():
            time.sleep(0.02)
        return {"started": True, "now": time.monotonic()}

    def report(self) -> dict:
        return {
            "now": time.monotonic(),
            "states": self.states,
            "watch": self.watch_events,
            "answer": {k: v for k, v in self.answer_result.items()},
        }

    def stop_engine(self) -> dict:
        if self.sup is not None:
            self.sup.stop(quiet=True)
            self.sup = None
        return {}


def main() -> None:
    head = Head(sys.argv[1], sys.argv[2])
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.pop("cmd")
        if cmd == "exit":
            head.stop_engine()
            print(json.dumps({}), flush=True)
            return
        try:
            reply = getattr(head, cmd)(**req)
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
