"""What llama.cpp allocates on each device for a given layer placement, in bytes.

The rules (FACTS.md, "Memory that llama.cpp allocates", and llama.cpp 0c1e570's logs):
- weights: blk.N.* on layer N's device; token_embd (and other input tensors) on the host;
  the output matrix and norm on the output device (tied embeddings: a second copy of
  token_embd there, unless that device is the host);
- KV cache per layer on that layer's device: (row(type_k, hd_k*n_head_kv) +
  row(type_v, hd_v*n_head_kv)) * cells; cells = n_ctx padded to 256; sliding-window
  layers keep min(cells, pad(n_swa + n_ubatch, 256)) cells when swa_full is off;
- compute buffers: one per device, sized for the worst ubatch; the output device holds
  the logits of a whole ubatch (n_vocab * n_ubatch * 4); the host has one too, and the
  host's output buffer holds one row of logits.
The compute-buffer terms below were fitted to llama.cpp's graph allocator on this build
(see tests/planner/test_forecast.py and bench/plan_forecast.py for the error they leave).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import get_args

from layerlab.core.gguf import ggml_type_size
from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.load_plan import KVType

KV_TYPES: tuple[str, ...] = get_args(KVType)  # the cache types a LoadPlan may name
KV_PAD = 256
F32 = 4
DEFAULT_PARALLEL = 4  # answers decoded together when they fit (llama-server's own default)


def row_bytes(type_name: str, n: int) -> int:
    block, size = ggml_type_size(type_name)
    return (n + block - 1) // block * size


def pad(n: int, to: int = KV_PAD) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class ContextSettings:
    """The context parameters that change memory."""

    n_ctx: int = 4096
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = True
    # answers decoded together (LoadPlan.parallel): each has its own n_ctx cells of KV, in its
    # own stream (kv_unified off), and the host keeps one row of logits per answer
    n_seq: int = 1
    # llama.cpp pipelines ubatches over several devices (GGML_SCHED_MAX_COPIES = 4) when
    # more than one device holds every layer and the output; inputs are then kept per copy.
    n_copies: int = 1
    use_mmap: bool = False  # host weights are the file range llama.cpp maps
    # llama.cpp's default (llama_context_params.swa_full = true) gives sliding-window layers
    # a full-size cache; with it off they keep only the window (+ one ubatch).
    swa_full: bool = True

    def __post_init__(self) -> None:
        for t in (self.type_k, self.type_v):
            if t not in KV_TYPES:
                raise ValueError(f"unknown KV cache type '{t}' (use f16, q8_0 or q4_0)")
        if self.type_v not in ("f16", "f32", "bf16") and not self.flash_attn:
            raise ValueError("a quantized V cache needs flash attention")


@dataclass
class DeviceMemory:
    """Forecast of one device's buffers."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0  # the host's logits row buffer

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.output

    def to_dict(self) -> dict:
        return {
            "weights": self.weights,
            "kv": self.kv,
            "compute": self.compute,
            "output": self.output,
            "total": self.total,
        }


class MemoryModel:
    """Precomputed per-layer costs of one model under one context setting.

    Ranges of layers cost O(1) (prefix sums), so a planner can try many splits per drag.
    """

    def __init__(self, facts: ModelFacts, ctx: ContextSettings):
        self.facts = facts
        self.ctx = ctx
        n = facts.n_layer
        self.cells = pad(max(ctx.n_ctx, 1))
        swa = facts.sliding_window
        self.cells_swa = (
            min(self.cells, pad(swa * ctx.n_seq + ctx.n_ubatch))
            if swa and not ctx.swa_full
            else self.cells
        )
        self.layer_weights = list(facts.layer_bytes)
        self.layer_kv = [self._kv(il) for il in range(n)]
        self._w = [0, *accumulate(self.layer_weights)]
        self._kv_sum = [0, *accumulate(self.layer_kv)]
        self._layer_peak = self._attention_peak()
        self._output_peak = facts.n_vocab * ctx.n_ubatch * F32 + self._u
        for t in (ctx.type_k, ctx.type_v):
            block = ggml_type_size(t)[0]
            if facts.head_dim_k % block or facts.head_dim_v % block:
                raise ValueError(
                    f"a {t} KV cache needs head dimensions divisible by {block}; "
                    f"this model's are {facts.head_dim_k}/{facts.head_dim_v}"
                )
        f, c = facts, ctx
        kv_cur = c.n_ubatch * F32 * max(f.n_head_kv) * (f.head_dim_k + f.head_dim_v)
        self._copy_extra = (c.n_copies - 1) * (self._mask() + self._u + kv_cur)
        self._host_ranges = self._tensor_ranges() if ctx.use_mmap else None

    # ---- per layer -------------------------------------------------------------------
    def _kv(self, il: int) -> int:
        f, c = self.facts, self.ctx
        kvh = f.n_head_kv[il]
        if kvh == 0:
            return 0
        cells = self.cells_swa if f.swa_layers and f.swa_layers[il] else self.cells
        return (
            (row_bytes(c.type_k, f.head_dim_k * kvh) + row_bytes(c.type_v, f.head_dim_v * kvh))
            * cells
            * c.n_seq
        )

    @property
    def _u(self) -> int:
        return self.facts.n_embd * self.ctx.n_ubatch * F32

    def _attention_peak(self) -> int:
        """Worst live set of one block's graph on a device (fitted to ggml-alloc)."""
        f, c = self.facts, self.ctx
        t, cells = c.n_ubatch, self.cells
        h = max(f.n_head)
        kvh = max(f.n_head_kv)
        kv_cur = t * F32 * kvh * (f.head_dim_k + f.head_dim_v)
        act = 4 * self._u + kv_cur
        if c.flash_attn:
            attn = cells * t * 2 + act + max(f.n_ff) * t * F32
        else:
            attn = cells * t * h * F32 + cells * t * F32 + act
        n_ff = max(f.n_ff)
        if f.n_expert:
            n_ff = n_ff * max(f.n_expert_used, 1)
        ffn = 2 * n_ff * t * F32 + 2 * self._u
        return max(attn, ffn)

    def _mask(self) -> int:
        c = self.ctx
        mask = self.cells * c.n_ubatch * (2 if c.flash_attn else F32)
        if any(self.facts.swa_layers):
            mask += self.cells_swa * c.n_ubatch * (2 if c.flash_attn else F32)
        return mask

    def _host_base(self) -> int:
        return self._mask() + (2 if self.ctx.flash_attn else 3) * self._u

    def _tensor_ranges(self) -> dict:
        """(part, layer-or-kind) -> (start, end) file offsets, for mapped host weights."""
        ranges: dict = {}
        for t in self.facts.tensors:
            if t.layer is not None:
                key = t.layer
            elif t.name.startswith(("output", "cls")):
                key = "output"
            else:
                key = "input"
            lo, hi = ranges.get((t.part, key), (t.offset, t.offset))
            ranges[(t.part, key)] = (min(lo, t.offset), max(hi, t.offset + t.nbytes))
        return ranges

    def _mapped_bytes(self, first: int, last: int, output: bool) -> int:
        """llama.cpp maps one span per file covering every host tensor in it."""
        assert self._host_ranges is not None
        keys = {"input", *range(first, last)} | ({"output"} if output else set())
        spans: dict[int, tuple[int, int]] = {}
        for (part, key), (lo, hi) in self._host_ranges.items():
            if key in keys:
                a, b = spans.get(part, (lo, hi))
                spans[part] = (min(a, lo), max(b, hi))
        return sum(b - a for a, b in spans.values())

    # ---- ranges ----------------------------------------------------------------------
    def weights(self, first: int, last: int) -> int:
        """Bytes of blocks first..last-1."""
        return self._w[last] - self._w[first]

    def kv(self, first: int, last: int) -> int:
        return self._kv_sum[last] - self._kv_sum[first]

    def device(self, first: int, last: int, output: bool, host: bool = False) -> DeviceMemory:
        """Forecast for a device holding blocks first..last-1 (and the output if `output`).

        `host` is the CPU: it also holds the input tensors, the host compute buffer and
        the logits row buffer.
        """
        f = self.facts
        m = DeviceMemory(weights=self.weights(first, last), kv=self.kv(first, last))
        peak = 0
        if last > first:
            peak = self._layer_peak
        if output:
            m.weights += f.output_bytes - (f.output_dup_bytes if host else 0)
            peak = max(peak, self._output_peak)
        if host:
            m.weights += f.token_embd_bytes + f.other_host_bytes
            if self._host_ranges is not None:
                m.weights = self._mapped_bytes(first, last, output)
            m.output = f.n_vocab * F32 * self.ctx.n_seq
            base = self._host_base()
            m.compute = max(base, peak + self._u) if peak else base
        else:
            m.compute = peak
        m.compute += self._copy_extra
        return m

    def layer_cost(self, il: int) -> int:
        """Weights + KV of one block: what moving it between devices moves."""
        return self.layer_weights[il] + self.layer_kv[il]

    @property
    def kv_total(self) -> int:
        return self._kv_sum[-1]


def parallel_that_fits(
    forecast_for: Callable[[int], Mapping[str, DeviceMemory]],
    free: Mapping[str, int],
    most: int = DEFAULT_PARALLEL,
) -> int:
    """The most answers (<= `most`, at least 1) whose KV for that many full contexts fits
    every device's free memory: `forecast_for(n)` is the plan's bytes per device label with
    n answers, `free` the bytes free per label (a label missing there is not checked).
    Each device carries the KV of its own layers, so a split model is checked per device."""
    for n in range(max(most, 1), 1, -1):
        need = forecast_for(n)
        if all(m.total <= free[label] for label, m in need.items() if label in free):
            return n
    return 1
