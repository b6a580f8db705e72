"""The head: the machine the person sits at, as one Qt-free object (see head.py)."""

from layerlab.core.head.events import (
    EngineChanged,
    FoundChanged,
    HeadEvent,
    Notice,
    WorkerBack,
    WorkersChanged,
    WorkerUpdated,
)
from layerlab.core.head.head import Head, Incident

__all__ = [
    "EngineChanged",
    "FoundChanged",
    "Head",
    "HeadEvent",
    "Incident",
    "Notice",
    "WorkerBack",
    "WorkerUpdated",
    "WorkersChanged",
]
