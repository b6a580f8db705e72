"""What the head tells its views: a closed set of small types a view can `match` on (exo's
runner statuses are the model). Emitted from the head's own threads; a Qt adapter hands them
to the GUI thread, `serve` and the CLI read the head directly."""

from __future__ import annotations

from dataclasses import dataclass, field

from layerlab.core.cluster.discovery import DiscoveredWorker
from layerlab.core.engine.supervisor import EngineState


@dataclass(frozen=True)
class EngineChanged:
    state: EngineState


@dataclass(frozen=True)
class WorkersChanged:
    """The person's worker list changed (added, removed, switched on or off)."""


@dataclass(frozen=True)
class WorkerUpdated:
    """One worker's probe answer, link numbers or readings changed."""

    address: str


@dataclass(frozen=True)
class FoundChanged:
    """Workers announced on the LAN (or why the head cannot look for them)."""

    found: list[DiscoveredWorker] = field(default_factory=list)
    problem: str = ""


@dataclass(frozen=True)
class WorkerBack:
    """A worker the model lost answers steadily again; the view offers to use it again."""

    address: str
    label: str


@dataclass(frozen=True)
class Notice:
    """Something the person should read: a reload on its way, a settings file set aside."""

    text: str


HeadEvent = EngineChanged | WorkersChanged | WorkerUpdated | FoundChanged | WorkerBack | Notice
