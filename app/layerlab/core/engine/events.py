"""Messages from the engine process to its supervisor: one JSON object per stdout line.

A closed set of small types (exo's runner status is the model) so that a view can match
on them. Human-readable logs go to stderr; stdout carries only these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

TOKEN_ENV = "LAYERLAB_ENGINE_TOKEN"  # how the supervisor hands the engine its API token
PARENT_ENV = "LAYERLAB_ENGINE_PARENT"  # the supervisor's pid: the engine ends when it is gone


@dataclass(frozen=True)
class Progress:
    """Model loading progress, 0..1."""

    fraction: float
    stage: str = "loading"


@dataclass(frozen=True)
class DeviceAllocation:
    """What llama.cpp really allocated on one device (bytes), read from its own log lines."""

    device: str  # the label the person sees: "CPU", "RPC 127.0.0.1:50052"
    weights: int = 0
    kv_cache: int = 0
    compute: int = 0


@dataclass(frozen=True)
class Placement:
    """The actual layer -> device assignment, n_layer blocks then the output (last)."""

    layer_devices: list[str]
    allocations: list[DeviceAllocation] = field(default_factory=list)

    @property
    def n_layer(self) -> int:
        return len(self.layer_devices) - 1


@dataclass(frozen=True)
class Ready:
    url: str
    model: str
    n_ctx: int
    load_s: float = 0.0  # seconds llama.cpp took to load (workers' transfers included)
    # The parameters llama.cpp really runs with, named as LoadPlan names them, and each way
    # they differ from the plan in words (engine/loaded.py).
    loaded: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadFailed:
    reason: str
    worker: str = ""  # the worker that caused it, when known


EngineEvent = Progress | Placement | Ready | LoadFailed
_TYPES: dict[str, type] = {t.__name__: t for t in (Progress, Placement, Ready, LoadFailed)}


def encode(event: EngineEvent) -> str:
    return json.dumps({"type": type(event).__name__, **asdict(event)})


def decode(line: str) -> EngineEvent | None:
    """Parse one stdout line; None for anything that is not an event (stray prints)."""
    try:
        data: dict[str, Any] = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    cls = _TYPES.get(data.pop("type", None))
    if cls is None:
        return None
    if cls is Placement:
        data["allocations"] = [DeviceAllocation(**a) for a in data.get("allocations", [])]
    try:
        return cls(**data)
    except TypeError:
        return None
