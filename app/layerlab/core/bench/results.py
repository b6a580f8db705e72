"""The table a bench run fills: one row per configuration, in llama-bench's terms.

Samples are nanoseconds per repetition, as llama-bench keeps them; tok/s is tokens over each
sample, mean ± sample standard deviation over the repetitions. Beside each measured figure
the planner's forecast and its error ((predicted - measured) / measured).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Literal

from layerlab.core.bench.configs import BenchConfig
from layerlab.core.engine.events import DeviceAllocation

Status = Literal["waiting", "measured", "failed", "cancelled"]


def tok_per_s(samples_ns: list[int], n_tokens: int) -> list[float]:
    return [n_tokens * 1e9 / ns for ns in samples_ns if ns > 0]


def mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def error(predicted: float | None, measured: float | None) -> float | None:
    """How far the forecast was off, as a fraction of what was measured (+0.25: 25% high)."""
    if predicted is None or not measured:
        return None
    return (predicted - measured) / measured


@dataclass
class ConfigResult:
    config: BenchConfig
    status: Status = "waiting"
    reason: str = ""  # failed / cancelled: why, in words
    n_prompt: int = 512
    n_gen: int = 128
    prompt_ns: list[int] = field(default_factory=list)
    gen_ns: list[int] = field(default_factory=list)
    first_token_ms: float | None = None
    load_s: float = 0.0
    memory: list[DeviceAllocation] = field(default_factory=list)
    loaded: dict = field(default_factory=dict)
    placement_text: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def pp_samples(self) -> list[float]:
        return tok_per_s(self.prompt_ns, self.n_prompt)

    @property
    def tg_samples(self) -> list[float]:
        return tok_per_s(self.gen_ns, self.n_gen)

    @property
    def pp(self) -> tuple[float | None, float | None]:
        return mean_sd(self.pp_samples)

    @property
    def tg(self) -> tuple[float | None, float | None]:
        return mean_sd(self.tg_samples)

    @property
    def pp_error(self) -> float | None:
        return error(self.config.predicted_pp, self.pp[0])

    @property
    def tg_error(self) -> float | None:
        return error(self.config.predicted_tg, self.tg[0])

    def memory_text(self) -> str:
        from layerlab.core.units import format_bytes

        return " · ".join(
            f"{a.device} {format_bytes(a.weights + a.kv_cache + a.compute)}" for a in self.memory
        )


@dataclass
class BenchRun:
    """One run: the model, the settings, the rows in the order they ran."""

    model_path: str
    model_name: str = ""
    n_prompt: int = 512
    n_gen: int = 128
    reps: int = 5
    rows: list[ConfigResult] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    cpu_info: str = ""
    model_size: int = 0
    model_n_params: int = 0
    model_type: str = ""
    cancelled: bool = False
    learned: list[str] = field(default_factory=list)  # what the speed model took from it

    @property
    def measured(self) -> list[ConfigResult]:
        return [r for r in self.rows if r.status == "measured"]

    @property
    def failures(self) -> list[ConfigResult]:
        return [r for r in self.rows if r.status == "failed"]

    def fastest(self) -> ConfigResult | None:
        """The measured row with the highest generation speed (prompt speed breaks ties)."""
        rows = [r for r in self.measured if r.tg[0] or r.pp[0]]
        if not rows:
            return None
        return max(rows, key=lambda r: (r.tg[0] or 0.0, r.pp[0] or 0.0))
