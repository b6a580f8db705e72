"""Shared bits of the spine benchmarks: timing a streamed answer, starting workers."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = [{"role": "user", "content": "Write a detailed story about a lighthouse keeper."}]
N_TOKENS = 128


def time_stream(pieces: Iterable[object]) -> tuple[float, int]:
    """Generation tok/s seen by the consumer: pieces after the first over the time they took."""
    first = last = None
    n = 0
    for _ in pieces:
        t = time.perf_counter()
        first = first or t
        last = t
        n += 1
    if n < 2 or first is None or last is None or last <= first:
        return 0.0, n
    return (n - 1) / (last - first), n


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def machine_note() -> str:
    import os

    return (
        f"machine: {cpu_name()}, {os.cpu_count()} cores; workers on loopback share them with "
        "the head, so splits here measure overhead, not added compute"
    )


def cpu_name() -> str:
    """The CPU's model name, and whether it has AMX (figures differ between the Xeon with
    AMX and the EPYC without, and a note must say which one they came from)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return "an unknown CPU"
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        "an unknown CPU",
    )
    return name + (" with AMX" if " amx_tile" in info else "")
