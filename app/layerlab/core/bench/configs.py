"""What a bench run compares: configurations built from the planner, each with its forecast.

The person ticks kinds (the planner's strategies, split modes, device subsets, split
candidates around the planner's best, thread counts); each kind adds configurations here,
the same plan twice only once. A configuration the planner says does not fit is kept, with
that reason, so the table lists it instead of loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.planner import Planner, PlanOptions, PlanResult


@dataclass(frozen=True)
class BenchChoices:
    """The kinds of configuration to compare (the Bench screen's ticks, `--configs`)."""

    strategies: bool = True  # fastest and proportional
    subsets: bool = True  # the CPU alone, and without each worker
    splits: bool = False  # tensor-split candidates around the fastest plan
    split_modes: bool = False  # row and none beside layer (row over RPC fails at load)
    threads: tuple[int, ...] = ()  # CPU thread counts to sweep on the fastest plan

    @classmethod
    def parse(cls, text: str) -> BenchChoices:
        """'strategies,subsets,splits,modes,threads=1:2' -> choices; '' -> the default."""
        if not text.strip():
            return cls()
        kinds = [k.strip() for k in text.split(",") if k.strip()]
        threads: tuple[int, ...] = ()
        known = {"strategies", "subsets", "splits", "modes", "threads", "local"}
        for k in kinds:
            name, _, value = k.partition("=")
            if name not in known:
                raise ValueError(
                    f"'{name}' is not a kind of comparison ({', '.join(sorted(known))})"
                )
            if name == "threads":
                try:
                    threads = tuple(int(x) for x in value.split(":") if x) or (1, 2)
                except ValueError:
                    raise ValueError(f"threads={value}: thread counts are like 1:2:4") from None
        names = {k.partition("=")[0] for k in kinds}
        return cls(
            strategies="strategies" in names,
            subsets="subsets" in names,
            splits="splits" in names,
            split_modes="modes" in names,
            threads=threads,
        )


@dataclass
class BenchConfig:
    """One configuration to measure: a name the person reads, the plan that loads, and what
    the planner forecast for it (None where it cannot say, e.g. row split)."""

    name: str
    plan: LoadPlan
    kind: str = "strategy"  # strategy | subset | split | mode | threads | plan
    predicted_pp: float | None = None
    predicted_tg: float | None = None
    reason: str = ""  # set: not loaded, recorded with this reason (does not fit)
    forecast: PlanResult | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Two configurations with the same key load the same way."""
        p = self.plan
        devices = ",".join(d.label for d in p.devices)
        split = ":".join(f"{s:g}" for s in p.tensor_split)
        return f"{devices}|{split}|{p.n_gpu_layers}|{p.split_mode}|{p.main_gpu}|{p.n_threads}"

    @property
    def placement_text(self) -> str:
        """'CPU' or 'RPC 127.0.0.1:50052 10 · RPC 127.0.0.1:50053 21' for the table."""
        p = self.plan
        if not p.devices:
            return "CPU"
        if p.split_mode == "none":
            return f"{p.devices[p.main_gpu].label} (all)"
        shares = p.tensor_split or [1.0] * len(p.devices)
        return " · ".join(f"{d.label} {s:g}" for d, s in zip(p.devices, shares, strict=True))


def bench_context(n_prompt: int, n_gen: int) -> int:
    """llama-bench's context: the test's tokens (padded to llama.cpp's 256 cells)."""
    need = n_prompt + n_gen + 1
    return max(512, -(-need // 256) * 256)


def _from_result(name: str, kind: str, result: PlanResult) -> BenchConfig:
    reason = ""
    if result.verdict == "does not fit":
        reason = "Does not fit: " + (
            result.notes[-1] if result.notes else "too big for these devices"
        )
    return BenchConfig(
        name,
        result.plan,
        kind,
        result.speed.prompt_tps,
        result.speed.generation_tps,
        reason,
        result,
    )


def comparisons(
    planner: Planner,
    devices: list[PlanDevice],
    choices: BenchChoices | None = None,
    n_ctx: int = 1024,
    base: PlanOptions | None = None,
) -> list[BenchConfig]:
    """The configurations to compare for these devices, the planner's best first."""
    choices = choices or BenchChoices()
    opts = replace(base or PlanOptions(), n_ctx=n_ctx)
    out: list[BenchConfig] = []
    seen: set[str] = set()

    def add(config: BenchConfig) -> None:
        if config.key not in seen:
            seen.add(config.key)
            out.append(config)

    def plan(strategy: str, **kw) -> PlanResult:
        return planner.plan(devices, replace(opts, strategy=strategy, **kw))

    best = plan("fastest")
    add(_from_result("fastest (planner's pick)", "strategy", best))
    if choices.strategies:
        add(_from_result("proportional (llama.cpp's default)", "strategy", plan("proportional")))
    others = [d for d in devices if not d.is_host]
    workers = list(dict.fromkeys(d.machine for d in others if not d.local))
    if choices.subsets and others:
        add(_from_result("CPU only", "subset", plan("fastest", excluded={d.label for d in others})))
        for w in workers:
            labels = {d.label for d in others if d.machine == w}
            if len(workers) > 1 or len(others) > len(labels):
                add(_from_result(f"without {w}", "subset", plan("fastest", excluded=labels)))
            only = {d.label for d in others if d.machine != w}
            # all layers on this one worker: its own speed and its link's, alone
            add(
                _from_result(
                    f"only {w}",
                    "subset",
                    plan("manual", excluded=only, ratios={label: 1.0 for label in labels}),
                )
            )
    if choices.splits and len(best.plan.devices) >= 2:
        for config in _split_candidates(planner, devices, opts, best):
            add(config)
    if choices.split_modes and best.plan.devices:
        row = best.plan.model_copy(update={"split_mode": "row"}, deep=True)
        add(BenchConfig("row split", row, "mode", None, None, "", None))
        shares = best.plan.tensor_split or [1.0] * len(best.plan.devices)
        main = max(range(len(shares)), key=lambda i: shares[i])
        label = best.plan.devices[main].label
        alone = plan("manual", ratios={label: 1.0})
        none = best.plan.model_copy(update={"split_mode": "none", "main_gpu": main}, deep=True)
        add(
            BenchConfig(
                f"no split (all on {label})",
                none,
                "mode",
                alone.speed.prompt_tps,
                alone.speed.generation_tps,
                "Does not fit on one device." if alone.verdict == "does not fit" else "",
                alone,
            )
        )
    for t in choices.threads:
        threaded = best.plan.model_copy(update={"n_threads": t}, deep=True)
        add(
            BenchConfig(
                f"{t} CPU thread{'s' if t != 1 else ''}",
                threaded,
                "threads",
                best.speed.prompt_tps,
                best.speed.generation_tps,
                "",
                best,
            )
        )
    return out


def _split_candidates(
    planner: Planner, devices: list[PlanDevice], opts: PlanOptions, best: PlanResult
) -> list[BenchConfig]:
    """A few tensor splits around the planner's best: move a tenth of the units (at least
    one) across each boundary, both ways."""
    shares = [int(s) for s in best.plan.tensor_split] or [1] * len(best.plan.devices)
    labels = [d.label for d in best.plan.devices]
    step = max(1, sum(shares) // 10)
    out = []
    for i in range(len(shares) - 1):
        for direction in (+1, -1):
            trial = list(shares)
            trial[i] += direction * step
            trial[i + 1] -= direction * step
            if min(trial) < 1:
                continue
            result = planner.plan(
                devices,
                replace(
                    opts,
                    strategy="manual",
                    ratios=dict(zip(labels, map(float, trial), strict=True)),
                    excluded={d.label for d in devices if not d.is_host and d.label not in labels},
                    fit=False,
                ),
            )
            out.append(_from_result("split " + ":".join(map(str, trial)), "split", result))
    return out
