"""The overflow choice "reload with a longer context", asked of the planner first.

A longer context is offered only when the planner says the model fits this cluster with it
(the same devices the layer map plans on: this machine and the enabled workers). The memory
the loaded model holds now is counted as free: reloading gives it back first.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.core.gguf import ModelFacts
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.inputs import open_facts
from layerlab.core.planner.planner import Planner, PlanOptions


@dataclass(frozen=True)
class LongerContext:
    n_ctx: int  # the context that was asked about
    plan: LoadPlan | None  # what to load for it; None: it does not fit, or is not possible
    words: str  # for the person: why not, when it does not fit

    @property
    def fits(self) -> bool:
        return self.plan is not None


def longer_context(
    loaded: LoadPlan,
    devices: list[PlanDevice],
    n_ctx: int | None = None,
    facts: ModelFacts | None = None,
) -> LongerContext:
    """Whether `loaded`'s model fits `devices` with `n_ctx` tokens of context (default: twice
    the loaded one, at most what the model was trained for), and the plan to load if so."""
    facts = facts or open_facts(loaded.model_path)
    now = loaded.n_ctx or facts.n_ctx_train
    target = n_ctx or 2 * now
    if facts.n_ctx_train:
        target = min(target, facts.n_ctx_train)
    if target <= now:
        return LongerContext(
            target,
            None,
            f"The model is already loaded with the longest context it was trained for "
            f"({now:,} tokens).",
        )
    planner = Planner(facts, loaded.model_path)

    def options(ctx: int) -> PlanOptions:
        return PlanOptions(
            n_ctx=ctx,
            type_k=loaded.type_k,
            type_v=loaded.type_v,
            flash_attn=loaded.flash_attn,
            n_ubatch=loaded.n_ubatch,
            parallel=loaded.parallel,
        )

    # what the loaded model takes now, by the same estimate, is free once it is reloaded
    held = {d.device.label: d.memory.total for d in planner.plan(devices, options(now)).devices}
    free = [d.with_(free=d.free + held.get(d.label, 0)) for d in devices]
    result = planner.plan(free, options(target))
    if result.verdict == "does not fit" or result.plan.n_ctx < target:
        return LongerContext(
            target,
            None,
            f"A longer context ({target:,} tokens) does not fit this cluster: its devices do "
            "not have the memory for that much context. Start a new chat or drop the oldest "
            "turns instead.",
        )
    plan = result.plan.model_copy(update={"model_name": loaded.model_name})
    return LongerContext(target, plan, "")
