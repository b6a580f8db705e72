"""Forecast of a finished LoadPlan per device, and its comparison with what llama.cpp did."""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.core.gguf.facts import ModelFacts
from layerlab.core.load_plan import LoadPlan, expected_layer_devices
from layerlab.core.planner.memory import ContextSettings, DeviceMemory, MemoryModel
from layerlab.core.units import MiB

HOST = "CPU"


def pipelined(plan: LoadPlan, n_layer: int) -> bool:
    """llama.cpp's pipeline-parallel condition (llama_context constructor, 0c1e570)."""
    return (
        len(plan.devices) > 1
        and plan.split_mode == "layer"
        and (plan.n_gpu_layers < 0 or plan.n_gpu_layers > n_layer)
    )


def context_of(plan: LoadPlan, n_layer: int) -> ContextSettings:
    return ContextSettings(
        n_ctx=plan.n_ctx,
        n_ubatch=min(plan.n_ubatch, plan.n_batch),
        type_k=plan.type_k,
        type_v=plan.type_v,
        flash_attn=plan.flash_attn,
        n_copies=4 if pipelined(plan, n_layer) else 1,
        use_mmap=plan.use_mmap,
        n_seq=plan.parallel,
    )


def forecast_plan(
    facts: ModelFacts, plan: LoadPlan, model: MemoryModel | None = None
) -> dict[str, DeviceMemory]:
    """Bytes per device label ('CPU' is the host) for a plan, as llama.cpp will place them."""
    model = model or MemoryModel(facts, context_of(plan, facts.n_layer))
    placement = expected_layer_devices(plan, facts.n_layer)
    out: dict[str, DeviceMemory] = {}
    labels = [HOST] + [d.label for d in plan.devices]
    for label in labels:
        blocks = [il for il, d in enumerate(placement[:-1]) if d == label]
        first, last = (blocks[0], blocks[-1] + 1) if blocks else (0, 0)
        if blocks and last - first != len(blocks):
            raise ValueError(f"{label} holds non-contiguous blocks")
        has_out = placement[-1] == label
        if label != HOST and not blocks and not has_out:
            continue
        out[label] = model.device(first, last, has_out, host=label == HOST)
    return out


@dataclass(frozen=True)
class ForecastError:
    device: str
    forecast: int
    actual: int

    @property
    def error(self) -> int:
        return self.forecast - self.actual

    @property
    def allowed(self) -> int:
        """The issue's bar: 2 % or 32 MiB, whichever is larger."""
        return max(self.actual * 2 // 100, 32 * MiB)

    @property
    def ok(self) -> bool:
        return abs(self.error) <= self.allowed

    @property
    def percent(self) -> float:
        return 100.0 * self.error / self.actual if self.actual else 0.0


def compare(forecast: dict[str, DeviceMemory], actual: dict[str, int]) -> list[ForecastError]:
    """Per device: forecast total vs the actual bytes llama.cpp allocated (labels match)."""
    labels = list(dict.fromkeys([*forecast, *actual]))
    return [
        ForecastError(lb, forecast[lb].total if lb in forecast else 0, actual.get(lb, 0))
        for lb in labels
    ]
