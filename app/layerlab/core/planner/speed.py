"""Predicted prompt and generation speed of a placement.

Generation is memory-bound: each token reads every active weight once (MoE: the experts
in use) and the KV cache written so far, so a device costs bytes / bandwidth; each hop to
another machine costs a round trip, and a remote output device sends the logits back.
Prompt processing is compute-bound per ubatch: max(bytes / bandwidth, FLOPs / FLOP/s).
The efficiency factors are what llama.cpp reaches of the peak on common parts, until a
device or link has been measured: then its recorded figures (planner/calibration.py) stand
in for the peak, the efficiency and the round trips, and `learn` records new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.planner.calibration import AGREE_WITHIN, Calibration, device_identity

GPU_BW_EFFICIENCY = 0.7
CPU_BW_EFFICIENCY = 0.6
FLOPS_EFFICIENCY = 0.5
PER_DEVICE_OVERHEAD_S = 0.2e-3  # launching one device's share of the graph per token
RPC_CALLS_PER_TOKEN = 2  # set inputs + compute, get outputs


@dataclass(frozen=True)
class Speed:
    prompt_tps: float
    generation_tps: float
    token_time_s: float

    def to_dict(self) -> dict:
        return {
            "prompt_tok_s": round(self.prompt_tps, 2),
            "generation_tok_s": round(self.generation_tps, 2),
        }


class SpeedModel:
    def __init__(self, facts: ModelFacts, calibration: Calibration | None = None):
        self.facts = facts
        self.calibration = calibration  # None: the constants alone
        n = facts.n_layer
        active = [0.0] * n
        params = [0.0] * n
        frac = (facts.n_expert_used / facts.n_expert) if facts.n_expert else 1.0
        for t in facts.tensors:
            if t.layer is None:
                continue
            f = frac if t.is_expert else 1.0
            active[t.layer] += t.nbytes * f
            params[t.layer] += t.n_elements * f
        self._active = [0.0]
        self._params = [0.0]
        for a, p in zip(active, params, strict=True):
            self._active.append(self._active[-1] + a)
            self._params.append(self._params[-1] + p)
        out_t = [t for t in facts.tensors if t.name.startswith("output")]
        self.output_bytes = facts.output_bytes
        self.output_params = sum(t.n_elements for t in out_t) or (
            facts.n_vocab * facts.n_embd if facts.tied_embeddings else 0
        )

    def _bandwidth(self, dev) -> float:
        """Effective generation bytes/s: measured when known, else peak x efficiency."""
        cal = self.calibration
        f = cal.same_part(dev.machine, dev.name) if cal else None
        if f is not None:
            return f.bandwidth
        eff = CPU_BW_EFFICIENCY if dev.kind == "cpu" else GPU_BW_EFFICIENCY
        return max(dev.bandwidth * eff, 1.0)

    def _flops(self, dev) -> float:
        cal = self.calibration
        f = cal.same_part(dev.machine, dev.name) if cal else None
        if f is not None and f.flops:
            return f.flops
        return max(dev.flops * FLOPS_EFFICIENCY, 1.0)

    def _hop_s(self, dev) -> float | None:
        return None if dev.local else self._hop_s_of(dev.machine)

    def _device_times(self, spans, kv_bytes, n_ubatch: int):
        """Per used device: (dev, generation s without hops, prompt s without hops, out)."""
        for (dev, first, last, out), kv in zip(spans, kv_bytes, strict=True):
            if last <= first and not out:
                continue
            bw = self._bandwidth(dev)
            flops = self._flops(dev)
            nbytes = self._active[last] - self._active[first]
            nparams = self._params[last] - self._params[first]
            if out:
                nbytes += self.output_bytes
                nparams += self.output_params
            t_gen = (nbytes + kv / 2) / bw + PER_DEVICE_OVERHEAD_S
            t_pp = max(nbytes / bw, 2 * nparams * n_ubatch / flops)
            yield dev, nbytes + kv / 2, t_gen, t_pp, out

    def predict(self, spans, kv_bytes, n_ubatch: int = 512) -> Speed:
        """spans: [(PlanDevice, first, last, has_output)] in llama.cpp order, CPU first."""
        f = self.facts
        t_gen = 0.0
        t_pp = 0.0
        prev_machine = "this machine"
        for dev, _nbytes, g, p, out in self._device_times(spans, kv_bytes, n_ubatch):
            t_gen += g
            t_pp += p
            hop = self._hop_s(dev)
            if dev.machine != prev_machine:
                if hop is not None:  # measured: the crossing, the logits coming back and all
                    t_gen += hop
                    t_pp += hop
                else:
                    t_gen += RPC_CALLS_PER_TOKEN * dev.rtt_s + f.n_embd * 4 / dev.link_bandwidth
                    t_pp += (
                        RPC_CALLS_PER_TOKEN * dev.rtt_s
                        + f.n_embd * 4 * n_ubatch / dev.link_bandwidth
                    )
                prev_machine = dev.machine
            if out and not dev.local and hop is None:
                # the logits come back to the head over the link
                t_gen += f.n_vocab * 4 / dev.link_bandwidth + dev.rtt_s
                t_pp += f.n_vocab * 4 / dev.link_bandwidth + dev.rtt_s
        t_gen = max(t_gen, 1e-6)
        t_pp = max(t_pp, 1e-6)
        return Speed(prompt_tps=n_ubatch / t_pp, generation_tps=1.0 / t_gen, token_time_s=t_gen)

    def learn(
        self,
        spans,
        kv_bytes,
        measured_tps: float,
        calibration: Calibration,
        threads: int | None = None,
        measured_pp_tps: float | None = None,
    ) -> list[str]:
        """Record what a measured generation speed says about this placement's devices and
        links; returns what was recorded, in words. One unknown at a time: a placement on
        one device gives that device's bandwidth; one whose devices are all known gives the
        links' crossing time (shared equally among the links not measured yet). A placement
        faster than its known parts allow rescales the one new worker's devices, but only once
        two such readings agree (Calibration.agreed); until then nothing is recorded."""
        if not (measured_tps > 0 and measured_tps < 1e7):
            return []
        t = 1.0 / measured_tps
        self.calibration = calibration
        used = list(self._device_times(spans, kv_bytes, 512))
        if not used:
            return []
        said: list[str] = []
        machines = list(dict.fromkeys(d.machine for d, *_ in used if not d.local))
        if len(used) == 1 and used[0][0].local:
            dev, nbytes, *_ = used[0]
            rest = t - PER_DEVICE_OVERHEAD_S
            ident = device_identity(dev.machine, dev.name)
            flops = None
            if measured_pp_tps and measured_pp_tps > 0:
                # prompt processing: the device's FLOPs for one token times tokens per second
                flops = 2 * (self._params[-1] + self.output_params) * measured_pp_tps
            if rest > 0 and calibration.record_device(ident, nbytes / rest, threads, flops):
                said.append(f"{dev.label}: {nbytes / rest / 1e9:.1f} GB/s effective")
            return said
        unknown_devices = [d for d, *_ in used if calibration.same_part(d.machine, d.name) is None]
        if unknown_devices:
            return said  # two unknowns in one figure: measure the devices alone first
        base = sum(g for _d, _n, g, _p, _o in used)
        known_hops = sum(h for m in machines if (h := self._hop_s_of(m)) is not None)
        new = [m for m in machines if self._hop_s_of(m) is None]
        if not new:
            if len(machines) == 1:  # one link, measured again: the newer figure wins
                m = machines[0]
                hop = t - base
                if hop < 0:  # faster than its devices' figures allow, even over a free link
                    done = self._faster_worker(m, hop, used, calibration, said)
                    if done is None:
                        return said
                    hop = 0.0 if done else hop
                if calibration.record_link(m, hop):
                    said.append(f"link to {m}: {max(hop, 0) * 1e3:.2f} ms a token")
            return said  # several links known: one figure cannot say which one changed
        share = (t - base - known_hops) / len(new)
        if share < 0 and len(new) == 1:
            done = self._faster_worker(new[0], share, used, calibration, said)
            if done is None:
                return said
            share = 0.0 if done else share
        for m in new:
            if calibration.record_link(m, share):
                said.append(f"link to {m}: {max(share, 0) * 1e3:.2f} ms a token")
        return said

    def _faster_worker(
        self, machine: str, share: float, used, calibration: Calibration, said: list[str]
    ) -> bool | None:
        """A placement `share` seconds a token faster than `machine`'s devices' figures allow
        (a worker's own process and threads reading faster than its part measured here): its
        devices read faster, and its link costs ~nothing. One sample is not enough to rescale
        a device (a lucky run, a noisy neighbour gone for a moment), so the figures change
        only when two readings agree: True when they were rescaled, None when this reading
        waits for another (the caller records nothing, so that the next measurement of this
        placement comes this way again), False when the time cannot be a faster read."""
        mine = [(d, g) for d, _n, g, _p, _o in used if d.machine == machine]
        reading = sum(g - PER_DEVICE_OVERHEAD_S for _d, g in mine)
        if reading + share <= 0:
            return False
        scale = reading / (reading + share)
        seen = [
            (d, device_identity(d.machine, d.name), self._bandwidth(d) * scale) for d, _ in mine
        ]
        agreed = [calibration.agreed(ident, bw) for _d, ident, bw in seen]
        if None in agreed:
            for d, ident, bw in seen:
                calibration.note_unconfirmed(ident, bw)
                said.append(
                    f"{d.label}: read {bw / 1e9:.1f} GB/s once; the old figure stays "
                    f"until another measurement agrees within {AGREE_WITHIN:.0%}"
                )
            return None
        for (d, ident, _bw), bw in zip(seen, agreed, strict=True):
            if calibration.record_device(ident, bw):
                said.append(f"{d.label}: {bw / 1e9:.1f} GB/s effective (two measurements agree)")
        return True

    def _hop_s_of(self, machine: str) -> float | None:
        cal = self.calibration
        f = cal.link(machine) if cal else None
        return f.hop_s if f is not None else None
