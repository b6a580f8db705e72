"""A head inside a test namespace: reads one JSON command a line, answers one JSON line.

Started by tests/cluster/conftest.py (HeadAgent) with `ip netns exec`. It uses the real
parts a head uses: discovery, pairing, HeadLinks (a loopback forwarder and a heartbeat watch
per paired worker) and the engine supervisor routed through them: a LoadPlan names each
paired worker by its LAN link address.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path

from layerlab.core.cluster import discovery, link
from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.client import Delta
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import DeviceRef, LoadPlan

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


class Head:
    def __init__(self, state_dir: str, name: str):
        self.watch_events: list[dict] = []
        self._last: dict[str, tuple] = {}
        # Links to paired workers as the window and `layerlab serve` hold them: a forwarder
        # and a heartbeat watch each, routed by the supervisor, with its lost-worker hook.
        self.links = HeadLinks(Path(state_dir), name, on_change=self._on_link, watch_retry_s=0.5)
        self.identity = self.links.identity
        self.trust = self.links.trust
        self.sup: EngineSupervisor | None = None
        self.states: list[dict] = []
        self.answer_thread: threading.Thread | None = None
        self.answer_result: dict = {}

    def _on_link(self, address: str) -> None:
        info = self.links.info(address)
        if info is None or self._last.get(address) == (info.state, info.kind):
            return
        self._last[address] = (info.state, info.kind)
        self.watch_events.append(
            {
                "fp": info.fingerprint,
                "state": info.state,
                "kind": info.kind,
                "t": time.monotonic(),
                "problem": info.problem,
            }
        )

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
            peer = self.links.pair(address, code, fp)
        except link.LinkError as e:
            return {"ok": False, "kind": e.kind, "problem": e.problem}
        return {"ok": True, "name": peer.name, "fingerprint": peer.fingerprint}

    def forward(self, fingerprint: str) -> dict:
        peer = self.trust.worker(fingerprint)
        assert peer is not None, "not paired"
        return {"endpoint": self.links.open(peer.address), "address": peer.address}

    def probe(self, endpoint: str) -> dict:
        r = self.links.probe(endpoint)
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
        self.links.attach(self.sup)
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

    def gauges(self, address: str, timeout: float = 15.0) -> dict:
        """A paired worker's gauges as the window gets them: one WorkerFeed reading over the
        link (`links.read_status`), the telemetry probe reading the feed, the sampler."""
        from layerlab.core.cluster.telemetry import WorkerTelemetryProbe
        from layerlab.core.cluster.worker_feed import WorkerFeed
        from layerlab.core.devices.inventory import discover
        from layerlab.core.devices.sampler import Sampler

        feed = WorkerFeed(read=self.links.read_status, interval_s=0.25)
        try:
            feed.watch(address)
            probe = WorkerTelemetryProbe(address, feed, timeout=timeout)
            inv = discover([probe], machine_name=address)
            sampler = Sampler(inv.groups, timeout=2.0)
            keys = [d.key for d in inv.machine.devices]
            first = sampler.round()
            deadline = time.monotonic() + timeout
            while True:
                later = sampler.round()
                if all(later[k].time > first[k].time for k in keys):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            reading = feed.reading(address)
            return {
                "state": reading.state if reading else None,
                "devices": [
                    {"key": d.key, "kind": d.kind, "llama_name": d.llama_name}
                    for d in inv.machine.devices
                ],
                "first": {k: first[k].to_dict() for k in keys},
                "later": {k: later[k].to_dict() for k in keys},
            }
        finally:
            feed.close()

    def plain_status(self, address: str) -> dict:
        from layerlab.core.cluster.status import read_plain_status

        return {"answered": read_plain_status(address, 2.0) is not None}


def main() -> None:
    head = Head(sys.argv[1], sys.argv[2])
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.pop("cmd")
        if cmd == "exit":
            head.stop_engine()
            head.links.close_all()
            print(json.dumps({}), flush=True)
            return
        try:
            reply = getattr(head, cmd)(**req)
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
