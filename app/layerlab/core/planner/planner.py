"""From model facts and devices to a LoadPlan, with a forecast and a verdict per device.

Strategies (all place whole units, i.e. blocks and the output, contiguously in llama.cpp's
device order, CPU first for the blocks it keeps):
- "proportional": llama.cpp's default, shares proportional to each device's free memory
  (less its reserve);
- "fastest": fastest-first, fill the devices with the highest bandwidth first and pick the
  set of devices that minimises the predicted time per generated token (a slow worker is
  left out when it would cost more in hops than it saves);
- "manual": the person's ratios.
With `fit` on (the default), a plan that does not fit moves blocks to the CPU, and only if
the host itself runs out, halves the context; every change is said in `changes`.
The device order is the same for every strategy: workers first (in the order given), local
GPUs last, so the output unit lands on a local GPU whenever there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.load_plan import LoadPlan, split_units
from layerlab.core.planner.calibration import Calibration
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.memory import (
    DEFAULT_PARALLEL,
    ContextSettings,
    DeviceMemory,
    MemoryModel,
)
from layerlab.core.planner.speed import Speed, SpeedModel
from layerlab.core.units import format_bytes

Strategy = Literal["proportional", "fastest", "manual"]
STRATEGIES: tuple[str, ...] = ("proportional", "fastest", "manual")
Verdict = Literal["fits", "fits with CPU offload", "does not fit"]
MIN_CTX = 512


@dataclass
class PlanOptions:
    strategy: Strategy = "fastest"
    n_ctx: int | None = None  # None: min(trained context, 4096)
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = True
    n_ubatch: int = 512
    ratios: dict[str, float] = field(default_factory=dict)  # manual: label -> share
    reserves: dict[str, int] = field(default_factory=dict)  # label -> bytes kept free
    excluded: set[str] = field(default_factory=set)  # labels left out
    fit: bool = True
    use_mmap: bool = True
    cpu_layers: int | None = None  # manual: blocks kept on the CPU (a dragged map)
    n_threads: int | None = None  # CPU compute threads; None: what was measured best here
    # answers decoded together, each with a full context of KV on every device that holds
    # layers; None: the most (up to memory.DEFAULT_PARALLEL) that fit as planned
    parallel: int | None = None


@dataclass
class DevicePlan:
    device: PlanDevice
    first: int  # blocks first..last-1
    last: int
    has_output: bool
    memory: DeviceMemory
    verdict: Verdict = "fits"

    @property
    def n_units(self) -> int:
        return self.last - self.first + (1 if self.has_output else 0)

    @property
    def free_after(self) -> int:
        return self.device.free - self.memory.total

    @property
    def layers_text(self) -> str:
        if self.last > self.first:
            n = self.last - self.first
            text = f"{self.first}-{self.last - 1}" if n > 1 else str(self.first)
            return text + (" + output" if self.has_output else "")
        return "output" if self.has_output else "-"

    def to_dict(self) -> dict:
        return {
            "device": self.device.to_dict(),
            "layers": [self.first, self.last],
            "layers_text": self.layers_text,
            "output": self.has_output,
            "memory": self.memory.to_dict(),
            "free_after": self.free_after,
            "capacity": self.device.capacity,
            "verdict": self.verdict,
        }


@dataclass
class PlanResult:
    plan: LoadPlan
    facts: ModelFacts
    strategy: str
    devices: list[DevicePlan]  # llama.cpp order; the host first
    verdict: Verdict
    speed: Speed
    changes: list[str] = field(default_factory=list)  # what fitting changed
    notes: list[str] = field(default_factory=list)  # advice: slow workers, etc.

    def device(self, label: str) -> DevicePlan:
        return next(d for d in self.devices if d.device.label == label)

    def to_dict(self) -> dict:
        return {
            "model": self.facts.to_dict(),
            "strategy": self.strategy,
            "verdict": self.verdict,
            "n_ctx": self.plan.n_ctx,
            **self.speed.to_dict(),
            "devices": [d.to_dict() for d in self.devices],
            "changes": self.changes,
            "notes": self.notes,
            "load_plan": self.plan.to_dict(),
        }


class Planner:
    """Plans for one model; keeps per-context memory models so re-planning is cheap."""

    def __init__(
        self, facts: ModelFacts, model_path: str = "", calibration: Calibration | None = None
    ):
        self.facts = facts
        self.model_path = model_path
        # the figures measured on these devices (bench, loads) stand in for the constants
        self.speed_model = SpeedModel(facts, calibration)
        self._models: dict[ContextSettings, MemoryModel] = {}

    def memory_model(self, ctx: ContextSettings) -> MemoryModel:
        m = self._models.get(ctx)
        if m is None:
            if len(self._models) > 64:
                self._models.clear()
            m = self._models[ctx] = MemoryModel(self.facts, ctx)
        return m

    # ---- public ------------------------------------------------------------------------
    def plan(
        self,
        devices: list[PlanDevice],
        options: PlanOptions | None = None,
        _compare_workers: bool = True,
    ) -> PlanResult:
        opts = options or PlanOptions()
        if opts.parallel is None:
            # The most answers whose KV fits without moving layers or shortening the context
            # that one answer would get; else one, planned as before.
            alone = self.plan(devices, replace(opts, parallel=1), _compare_workers)
            for n in range(DEFAULT_PARALLEL, 1, -1):
                tried = self.plan(devices, replace(opts, parallel=n), _compare_workers)
                if (
                    tried.verdict == alone.verdict != "does not fit"
                    and tried.changes == alone.changes
                    and tried.plan.tensor_split == alone.plan.tensor_split
                    and tried.plan.n_gpu_layers == alone.plan.n_gpu_layers
                ):
                    return tried
            return alone
        host, gpus = self._arrange(devices, opts)
        n_ctx = opts.n_ctx or min(self.facts.n_ctx_train or 4096, 4096)
        changes: list[str] = []
        notes: list[str] = []
        first: PlanResult | None = None
        while True:
            counts = self._counts(host, gpus, n_ctx, opts, notes)
            counts, moved = self._fit(host, gpus, counts, n_ctx, opts) if opts.fit else (counts, [])
            result = self._result(host, gpus, counts, n_ctx, opts)
            result.changes = list(moved)
            first = first or result
            if not opts.fit or result.verdict != "does not fit":
                break
            if n_ctx <= MIN_CTX:
                # Even the smallest context does not fit: show the plan as asked, and say so.
                result = first
                notes.append(
                    f"Does not fit even with a {MIN_CTX}-token context: the model "
                    "needs more memory than these devices have free."
                )
                changes = []
                break
            new_ctx = max(MIN_CTX, n_ctx // 2)
            changes.append(
                f"context reduced from {n_ctx:,} to {new_ctx:,} tokens: the host's "
                "memory cannot hold the rest"
            )
            n_ctx = new_ctx
        result.changes = result.changes + changes
        result.notes = notes
        if _compare_workers:
            self._worker_notes(result, devices, opts)
        return result

    # ---- steps ---------------------------------------------------------------------------
    def _arrange(self, devices: list[PlanDevice], opts: PlanOptions):
        host = None
        workers, local = [], []
        for d in devices:
            if opts.reserves.get(d.label):
                d = d.with_(reserve=opts.reserves[d.label])
            if d.label in opts.excluded:
                d = d.with_(excluded=True)
            if d.is_host:
                host = d
            elif d.excluded:
                continue
            elif d.local:
                local.append(d)
            else:
                workers.append(d)
        if host is None:
            raise ValueError("the device list needs the host (the head's CPU memory)")
        return host, workers + local

    def _ctx(self, n_ctx: int, opts: PlanOptions, pipelined: bool) -> ContextSettings:
        return ContextSettings(
            n_ctx=n_ctx,
            n_ubatch=opts.n_ubatch,
            type_k=opts.type_k,
            type_v=opts.type_v,
            flash_attn=opts.flash_attn,
            n_copies=4 if pipelined else 1,
            use_mmap=opts.use_mmap,
            n_seq=opts.parallel or 1,
        )

    def _spans(self, counts: list[int]) -> list[tuple[int, int, bool]]:
        """counts[0] is the CPU's blocks; counts[1:] the devices' units (last holds output)."""
        n = self.facts.n_layer
        spans = []
        cpu = counts[0]
        gpu_units = sum(counts[1:])
        spans.append((0, min(cpu, n), gpu_units == 0))
        pos = cpu
        last_dev = max((i for i, c in enumerate(counts) if c > 0 and i > 0), default=0)
        for i, c in enumerate(counts[1:], start=1):
            end = pos + c
            has_out = i == last_dev
            spans.append((pos, min(end, n), has_out))
            pos = end
        return spans

    def _memories(
        self, counts: list[int], n_ctx: int, opts: PlanOptions, assume_pipelined: bool = False
    ) -> list[DeviceMemory]:
        used = sum(1 for c in counts[1:] if c > 0)
        pipelined = assume_pipelined or (used > 1 and counts[0] == 0)
        model = self.memory_model(self._ctx(n_ctx, opts, pipelined=pipelined))
        out = []
        for i, (first, last, has_out) in enumerate(self._spans(counts)):
            if i > 0 and last <= first and not has_out:
                out.append(DeviceMemory())
            else:
                out.append(model.device(first, last, has_out, host=i == 0))
        return out

    def _counts(self, host, gpus, n_ctx, opts, notes) -> list[int]:
        n_units = self.facts.n_units
        if not gpus:
            return [self.facts.n_layer]
        if opts.strategy == "manual":
            shares = [max(0.0, float(opts.ratios.get(d.label, 0.0))) for d in gpus]
            if not any(shares):
                shares = [float(d.capacity) for d in gpus]
            cpu = max(0, min(opts.cpu_layers or 0, self.facts.n_layer))
            return [cpu, *_split_units(shares, n_units - cpu)]
        if opts.strategy == "proportional":
            return [0, *_split_units([float(d.capacity) for d in gpus], n_units)]
        if opts.strategy == "fastest":
            return self._fastest(host, gpus, n_ctx, opts, notes)
        raise ValueError(f"unknown strategy '{opts.strategy}' (use {', '.join(STRATEGIES)})")

    def _fastest(self, host, gpus, n_ctx, opts, notes) -> list[int]:
        order = sorted(range(len(gpus)), key=lambda i: (-gpus[i].bandwidth, i))
        cpu_only = [self.facts.n_layer] + [0] * len(gpus)
        cpu_mem = self._memories(cpu_only, n_ctx, opts)[0]
        best: tuple[float, list[int]] | None = None
        if cpu_mem.total <= host.capacity:
            best = (self._speed(host, gpus, cpu_only, n_ctx, opts).token_time_s, cpu_only)
        for k in range(1, len(order) + 1):
            chosen = set(order[:k])
            counts = [self.facts.n_layer] + [0] * len(gpus)
            for i in order[:k]:
                # With several devices and no block left on the CPU, llama.cpp pipelines and
                # keeps 4 copies of the inputs: fill as if it will, so the last blocks fit.
                counts = self._fill(host, gpus, counts, i, n_ctx, opts, assume_pipelined=k > 1)
            if not all(counts[1 + i] > 0 for i in chosen):
                continue  # a device that takes nothing adds nothing
            counts = self._top_up(gpus, counts, order[:k], n_ctx, opts, assume_pipelined=k > 1)
            t = self._speed(host, gpus, counts, n_ctx, opts).token_time_s
            if best is None or t < best[0] - 1e-12:
                best = (t, counts)
        return best[1] if best else [self.facts.n_layer] + [0] * len(gpus)

    def _fill(self, host, gpus, counts, i, n_ctx, opts, assume_pipelined=False) -> list[int]:
        """Move as many units as fit from the CPU to gpus[i] (binary search)."""
        lo, hi = 0, counts[0] + 1  # +1: the output unit may come along (see trial)
        base = list(counts)

        def trial(k: int) -> list[int]:
            # The output unit belongs to the last device (in llama.cpp order) with units:
            # a device after the current holder takes the output over, and the holder keeps
            # its blocks (its unit count drops by one).
            c = list(base)
            holders = [j for j in range(len(gpus)) if c[1 + j] > 0]
            if k > 0 and not holders:
                c[0] -= k - 1
            elif k > 0 and c[1 + i] == 0 and i > holders[-1]:
                c[1 + holders[-1]] -= 1
                c[0] -= k - 1
            else:
                c[0] -= k
            c[1 + i] += k
            return c

        def ok(k: int) -> bool:
            c = trial(k)
            if c[0] < 0:
                return False
            mems = self._memories(c, n_ctx, opts, assume_pipelined)
            return all(
                m.total <= d.capacity
                for m, d, cnt in zip(mems[1:], gpus, c[1:], strict=True)
                if cnt > 0
            )

        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid - 1
        return trial(lo) if lo else base

    def _top_up(self, gpus, counts, order, n_ctx, opts, assume_pipelined) -> list[int]:
        """Give a faster device back the room a slower one's filling freed on it.

        Filling a device later in llama.cpp's order hands it the output unit, so the
        device filled before it (a faster one) is left with the output's room unused: move
        blocks from the slowest devices to the fastest while everything still fits."""
        counts = list(counts)
        for a, i in enumerate(order):
            for j in reversed(order[a + 1 :]):
                while counts[1 + j] > 1:
                    trial = list(counts)
                    trial[1 + i] += 1
                    trial[1 + j] -= 1
                    mems = self._memories(trial, n_ctx, opts, assume_pipelined)
                    if any(
                        m.total > d.capacity
                        for m, d, c in zip(mems[1:], gpus, trial[1:], strict=True)
                        if c > 0
                    ):
                        break
                    counts = trial
        return counts

    def _fit(self, host, gpus, counts, n_ctx, opts) -> tuple[list[int], list[str]]:
        """Move blocks from overflowing devices to the CPU until every device fits."""
        counts = list(counts)
        moved = [0] * len(gpus)
        for _ in range(self.facts.n_units * max(1, len(gpus))):
            mems = self._memories(counts, n_ctx, opts)
            over = [
                i
                for i, (m, d) in enumerate(zip(mems[1:], gpus, strict=True))
                if counts[1 + i] > 0 and m.total > d.capacity
            ]
            if not over:
                break
            i = over[0]
            gpu_total = sum(counts[1:])
            if gpu_total == 1:  # only the output is left on GPUs: keep it on the CPU
                counts[1 + i] = 0
                moved[i] += 1
                continue
            counts[1 + i] -= 1
            counts[0] += 1
            moved[i] += 1
        msgs = [
            f"moved {n} layer{'s' if n != 1 else ''} from {gpus[i].label} to the CPU "
            f"(it has {format_bytes(gpus[i].capacity)} to give)"
            for i, n in enumerate(moved)
            if n
        ]
        return counts, msgs

    def _speed(self, host, gpus, counts, n_ctx, opts) -> Speed:
        mems = self._memories(counts, n_ctx, opts)
        spans = self._spans(counts)
        devs = [host, *gpus]
        rows = [(d, a, b, o) for d, (a, b, o) in zip(devs, spans, strict=True)]
        return self.speed_model.predict(rows, [m.kv for m in mems], opts.n_ubatch)

    def _result(self, host, gpus, counts, n_ctx, opts) -> PlanResult:
        mems = self._memories(counts, n_ctx, opts)
        spans = self._spans(counts)
        rows: list[DevicePlan] = []
        for i, (d, (a, b, o), m) in enumerate(zip([host, *gpus], spans, mems, strict=True)):
            if i > 0 and counts[i] == 0:
                continue
            verdict: Verdict = "fits" if m.total <= d.capacity else "does not fit"
            if i == 0 and verdict == "fits" and gpus and (b > a or o):
                verdict = "fits with CPU offload"
            rows.append(DevicePlan(d, a, b, o, m, verdict))
        used = [(d, c) for d, c in zip(gpus, counts[1:], strict=True) if c > 0]
        overall: Verdict = "fits"
        if any(r.verdict == "does not fit" for r in rows):
            overall = "does not fit"
        elif gpus and rows[0].verdict == "fits with CPU offload":
            overall = "fits with CPU offload"
        n_gpu_units = sum(c for _, c in used)
        plan = LoadPlan(
            model_path=self.model_path,
            model_name=self.facts.name,
            n_ctx=n_ctx,
            devices=[d.ref for d, _ in used],
            tensor_split=[float(c) for _, c in used],
            n_gpu_layers=-1 if n_gpu_units >= self.facts.n_units else n_gpu_units,
            n_batch=max(opts.n_ubatch, 512),
            n_ubatch=opts.n_ubatch,
            type_k=opts.type_k,
            type_v=opts.type_v,
            flash_attn=opts.flash_attn,
            use_mmap=opts.use_mmap,
            n_threads=opts.n_threads,
            parallel=opts.parallel or 1,
        )
        return PlanResult(
            plan,
            self.facts,
            opts.strategy,
            rows,
            overall,
            self._speed(host, gpus, counts, n_ctx, opts),
        )

    def _worker_notes(
        self, result: PlanResult, devices: list[PlanDevice], opts: PlanOptions
    ) -> None:
        """Say when a worker makes generation slower than leaving it out."""
        all_workers = list(
            dict.fromkeys(
                d.machine for d in devices if not d.local and d.label not in opts.excluded
            )
        )
        used = set(result.plan.workers)
        for ep in all_workers:
            labels = {d.label for d in devices if d.machine == ep}
            alt_opts = PlanOptions(**{**opts.__dict__, "excluded": set(opts.excluded) | labels})
            alt = self.plan(devices, alt_opts, _compare_workers=False)
            if alt.verdict == "does not fit":
                continue
            with_tps = result.speed.generation_tps
            without = alt.speed.generation_tps
            if ep in used and without >= with_tps and _rank(alt.verdict) >= _rank(result.verdict):
                result.notes.append(
                    f"Worker {ep} makes generation slower: {with_tps:.1f} tok/s with it, "
                    f"{without:.1f} tok/s without. The model fits without it; RPC buys "
                    "capacity, not speed. Exclude it for speed."
                )
            elif ep not in used:
                result.notes.append(
                    f"Worker {ep} is left out: using it would not make generation faster "
                    f"({without:.1f} tok/s without it)."
                )


def _rank(v: str) -> int:
    return {"does not fit": 0, "fits with CPU offload": 1, "fits": 2}[v]


def _split_units(shares: list[float], n_units: int) -> list[int]:
    """Units per device the way llama.cpp splits them (load_plan.split_units)."""
    counts = [0] * len(shares)
    for i in split_units(shares, n_units):
        counts[i] += 1
    return counts
