"""Bench: measure the splits side by side, apply the fastest, teach the speed model.

configs.py builds what to compare from the planner (strategies, split modes, device subsets,
split candidates, thread counts); runner.py loads each in its own engine process, measures it
llama-bench style and unloads it; results.py holds the table; export.py writes it as
Markdown, CSV or llama-bench's JSON.
"""

from layerlab.core.bench.configs import BenchChoices, BenchConfig, comparisons
from layerlab.core.bench.results import BenchRun, ConfigResult
from layerlab.core.bench.runner import BenchFinished, BenchProgress, BenchRunner, BenchSettings

__all__ = [
    "BenchChoices",
    "BenchConfig",
    "BenchFinished",
    "BenchProgress",
    "BenchRun",
    "BenchRunner",
    "BenchSettings",
    "ConfigResult",
    "comparisons",
]
