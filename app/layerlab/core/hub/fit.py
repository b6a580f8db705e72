"""Fit badges: does this quant fit *this* cluster, before anything is downloaded?

The planner runs on the remote header (HubFile: a few Range requests, never the file's data),
checked against the file sizes like a local file, at the person's context, on this cluster's
devices: local GPUs + CPU + enabled workers' probe answers. The badge is the planner's verdict
put in words, with its predicted generation speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from layerlab.core.gguf import ByteSource, GGUFError, ModelFacts, check_model_file
from layerlab.core.hub.problems import HubProblem, words_for
from layerlab.core.hub.quants import DEFAULT_QUANT, Quant
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.planner import Planner, PlanOptions, PlanResult
from layerlab.core.units import format_bytes

BadgeKind = Literal["gpu", "split", "cpu_offload", "cpu", "too_large", "unknown"]


@dataclass(frozen=True)
class FitBadge:
    kind: BadgeKind
    text: str  # 'fits on GPUs', 'fits, 12 layers on bench-box', 'too large', ...
    generation_tps: float = 0.0
    verdict: str = ""  # the planner's verdict, word for word
    detail: str = ""  # why unknown, or what fitting changed

    @property
    def fits(self) -> bool:
        return self.kind not in ("too_large", "unknown")

    @property
    def speed_text(self) -> str:
        return f"~{self.generation_tps:.0f} tok/s" if self.generation_tps >= 1 else ""


def badge_for(result: PlanResult, labels: dict[str, str] | None = None) -> FitBadge:
    """The planner's result in a few words. `labels` names a worker ('host:port' -> name)."""
    labels = labels or {}
    tps = result.speed.generation_tps
    if result.verdict == "does not fit":
        return FitBadge("too_large", "too large", 0.0, result.verdict)
    host = result.devices[0]
    gpus = [d for d in result.devices[1:] if d.n_units > 0]
    detail = "; ".join(result.changes)
    if not gpus:
        return FitBadge("cpu", "fits on CPU (slow)", tps, result.verdict, detail)
    if result.verdict == "fits with CPU offload":
        on_cpu = sum(result.facts.layer_bytes[host.first : host.last])  # the blocks it keeps
        text = f"fits with {format_bytes(on_cpu)} on CPU (slow)"
        return FitBadge("cpu_offload", text, tps, result.verdict, detail)
    remote = [d for d in gpus if not d.device.local]
    if remote:
        by_machine: dict[str, int] = {}
        for d in remote:
            by_machine[d.device.machine] = by_machine.get(d.device.machine, 0) + (d.last - d.first)
        machine, n = max(by_machine.items(), key=lambda kv: kv[1])
        name = labels.get(machine, machine)
        return FitBadge("split", f"fits, {n} layers on {name}", tps, result.verdict, detail)
    return FitBadge("gpu", "fits on GPUs", tps, result.verdict, detail)


def plan_on(facts: ModelFacts, devices: list[PlanDevice], n_ctx: int | None) -> PlanResult:
    """The planner's plan for `facts` on `devices`, as a fit badge computes it (the same
    options `layerlab plan` uses by default), its speed from what was measured here."""
    from layerlab.core.planner.calibration import Calibration

    return Planner(facts, calibration=Calibration.load()).plan(devices, PlanOptions(n_ctx=n_ctx))


def fit_source(
    source: ByteSource,
    devices: list[PlanDevice],
    n_ctx: int | None,
    labels: dict[str, str] | None = None,
) -> tuple[FitBadge, ModelFacts | None]:
    """Read `source`'s header(s), check them against the file sizes, plan: a badge, and the
    facts when the header could be read. Never raises: faults come back as 'unknown'."""
    try:
        facts = check_model_file(source)
    except GGUFError as e:
        return FitBadge(
            "unknown", "cannot tell", detail=f"The model's header cannot be read: {e}"
        ), None
    except Exception as e:
        problem = words_for(e, f"read the header of {source.name}")
        return FitBadge("unknown", "cannot tell", detail=problem.message), None
    try:
        return badge_for(plan_on(facts, devices, n_ctx), labels), facts
    except Exception as e:  # a planner fault must not blank the list
        return FitBadge(
            "unknown", "cannot tell", detail=f"The planner could not plan it: {e}"
        ), facts


def fit_quants(
    quants: Iterable[Quant],
    source_for: Callable[[Quant], ByteSource],
    devices: list[PlanDevice],
    n_ctx: int | None,
    labels: dict[str, str] | None = None,
    on_badge: Callable[[Quant, FitBadge, ModelFacts | None], None] | None = None,
    workers: int = 8,
) -> dict[str, FitBadge]:
    """Badges for every quant, several headers read at once (each a few round trips), each
    handed to `on_badge` as soon as it is known. Returns tag -> badge."""
    quants = list(quants)
    out: dict[str, FitBadge] = {}

    def one(q: Quant) -> None:
        badge, facts = fit_source(source_for(q), devices, n_ctx, labels)
        out[q.tag] = badge
        if on_badge is not None:
            on_badge(q, badge, facts)

    if not quants:
        return out
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(quants)))) as pool:
        for f in [pool.submit(one, q) for q in quants]:
            f.result()
    return out


def recommended(quants: list[Quant], badges: dict[str, FitBadge]) -> Quant | None:
    """The largest quant that fits on GPUs (on their own or with workers); else Q4_K_M."""
    on_gpus = [q for q in quants if badges.get(q.tag) and badges[q.tag].kind in ("gpu", "split")]
    if on_gpus:
        return max(on_gpus, key=lambda q: q.size)
    return next((q for q in quants if q.tag == DEFAULT_QUANT), None)


__all__ = [
    "BadgeKind",
    "FitBadge",
    "HubProblem",
    "badge_for",
    "fit_quants",
    "fit_source",
    "plan_on",
    "recommended",
]
