"""Predicted prompt and generation speed of a placement.

Generation is memory-bound: each token reads every active weight once (MoE: the experts
in use) and the KV cache written so far, so a device costs bytes / bandwidth; each hop to
another machine costs a round trip, and a remote output device sends the logits back.
Prompt processing is compute-bound per ubatch: max(bytes / bandwidth, FLOPs / FLOP/s).
The efficiency factors are what llama.cpp reaches of the peak on common parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.core.gguf.facts import ModelFacts

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
    def __init__(self, facts: ModelFacts):
        self.facts = facts
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

    def predict(self, spans, kv_bytes, n_ubatch: int = 512) -> Speed:
        """spans: [(PlanDevice, first, last, has_output)] in llama.cpp order, CPU first."""
        f = self.facts
        t_gen = 0.0
        t_pp = 0.0
        prev_machine = "this machine"
        for (dev, first, last, out), kv in zip(spans, kv_bytes, strict=True):
            if last <= first and not out:
                continue
            eff = CPU_BW_EFFICIENCY if dev.kind == "cpu" else GPU_BW_EFFICIENCY
            bw = max(dev.bandwidth * eff, 1.0)
            flops = max(dev.flops * FLOPS_EFFICIENCY, 1.0)
            nbytes = self._active[last] - self._active[first]
            nparams = self._params[last] - self._params[first]
            if out:
                nbytes += self.output_bytes
                nparams += self.output_params
            t_gen += (nbytes + kv / 2) / bw + PER_DEVICE_OVERHEAD_S
            t_pp += max(nbytes / bw, 2 * nparams * n_ubatch / flops)
            if dev.machine != prev_machine:
                t_gen += RPC_CALLS_PER_TOKEN * dev.rtt_s + f.n_embd * 4 / dev.link_bandwidth
                t_pp += (
                    RPC_CALLS_PER_TOKEN * dev.rtt_s + f.n_embd * 4 * n_ubatch / dev.link_bandwidth
                )
                prev_machine = dev.machine
            if out and not dev.local:
                # the logits come back to the head over the link
                t_gen += f.n_vocab * 4 / dev.link_bandwidth + dev.rtt_s
                t_pp += f.n_vocab * 4 / dev.link_bandwidth + dev.rtt_s
        t_gen = max(t_gen, 1e-6)
        t_pp = max(t_pp, 1e-6)
        return Speed(prompt_tps=n_ubatch / t_pp, generation_tps=1.0 / t_gen, token_time_s=t_gen)
