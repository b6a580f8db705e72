"""What the engine really loaded, against what the plan said.

The plan is what the person saw (layer map, memory per device); llama.cpp may quietly change a
setting on the way (round the context up, clamp a batch, drop flash attention). Each change
is either worded for the person (harmless: the plan's memory still holds) or refused (the
plan's numbers would be wrong), never silently kept.
"""

from __future__ import annotations

from typing import Any

from layerlab.core.load_plan import LoadPlan

CTX_PAD = 256  # llama.cpp pads the context to a multiple of this (llama_context)

# Fields where a difference changes memory or placement: such a load is refused.
MUST_MATCH = (
    "parallel",
    "flash_attn",
    "type_k",
    "type_v",
    "split_mode",
    "n_gpu_layers",
    "main_gpu",
    "devices",
)
_NAMES = {
    "parallel": "the number of answers decoded together",
    "flash_attn": "flash attention",
    "type_k": "the K cache type",
    "type_v": "the V cache type",
    "split_mode": "the split mode",
    "n_gpu_layers": "the number of offloaded layers",
    "main_gpu": "the main device",
    "devices": "the device list",
}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def planned(plan: LoadPlan) -> dict:
    """The plan's fields as `compare` reads them: devices by the labels the person sees."""
    return {**plan.to_dict(), "devices": [d.label for d in plan.devices]}


def compare(plan: dict, loaded: dict) -> tuple[list[str], list[str]]:
    """(notes, refusals): each difference between the plan and the load, in words.

    `plan` is LoadPlan.to_dict() (devices given as labels under "devices"), `loaded` what the
    engine read back from llama.cpp. Fields the plan leaves to llama.cpp (n_threads None) are
    not compared.
    """
    notes: list[str] = []
    refusals: list[str] = []
    for name in MUST_MATCH:
        if name in loaded and name in plan and loaded[name] != plan[name]:
            refusals.append(
                f"The plan asks for {_NAMES[name]} {_show(plan[name])}, but llama.cpp loaded "
                f"{_show(loaded[name])}."
            )

    ctx_plan, ctx = plan.get("n_ctx"), loaded.get("n_ctx")
    if ctx is not None and ctx_plan is not None and ctx != ctx_plan:
        if ctx_plan == 0:
            notes.append(f"The context is the model's own length: {ctx} tokens.")
        elif ctx == -(-ctx_plan // CTX_PAD) * CTX_PAD:
            notes.append(
                f"llama.cpp rounds the context up to a multiple of {CTX_PAD}: {ctx} tokens, "
                f"not {ctx_plan}."
            )
        else:
            refusals.append(f"The plan asks for {ctx_plan} tokens of context; llama.cpp has {ctx}.")

    batch_plan, batch = plan.get("n_batch"), loaded.get("n_batch")
    if batch is not None and batch_plan is not None and batch != batch_plan:
        notes.append(
            f"A batch holds {batch} tokens, not {batch_plan}: it cannot be larger than the context."
            if ctx_plan and batch == min(batch_plan, ctx_plan)
            else f"llama.cpp set the batch to {batch} tokens instead of {batch_plan}."
        )
    ubatch_plan, ubatch = plan.get("n_ubatch"), loaded.get("n_ubatch")
    if ubatch is not None and ubatch_plan is not None and ubatch != ubatch_plan:
        notes.append(
            f"A micro-batch holds {ubatch} tokens, not {ubatch_plan}: it cannot be larger than "
            "the batch."
            if batch is not None and ubatch == min(ubatch_plan, batch)
            else f"llama.cpp set the micro-batch to {ubatch} tokens instead of {ubatch_plan}."
        )
    threads_plan = plan.get("n_threads")
    if threads_plan is not None:
        for name in ("n_threads", "n_threads_batch"):
            if name in loaded and loaded[name] != threads_plan:
                notes.append(f"llama.cpp uses {loaded[name]} threads, not {threads_plan}.")
                break
    return notes, refusals
