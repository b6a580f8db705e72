"""A plan in words, for the terminal."""

from __future__ import annotations

from layerlab.core.planner.planner import PlanResult
from layerlab.core.units import format_bytes


def text_report(r: PlanResult) -> str:
    f = r.facts
    lines = [
        f.describe(),
        f"strategy {r.strategy}, context {r.plan.n_ctx:,}, KV {r.plan.type_k}: {r.verdict}",
        "",
    ]
    lines.append(
        f"{'device':<28} {'layers':<16} {'weights':>10} {'KV':>10} {'compute':>10} "
        f"{'free after':>11}  verdict"
    )
    for d in r.devices:
        m = d.memory
        lines.append(
            f"{d.device.label:<28} {d.layers_text:<16} {format_bytes(m.weights):>10} "
            f"{format_bytes(m.kv):>10} {format_bytes(m.compute + m.output):>10} "
            f"{format_bytes(d.device.capacity - m.total):>11}  {d.verdict}"
        )
    lines.append("")
    lines.append(
        f"predicted: prompt {r.speed.prompt_tps:.0f} tok/s, generation "
        f"{r.speed.generation_tps:.1f} tok/s"
    )
    lines += [f"changed: {c}" for c in r.changes]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)
