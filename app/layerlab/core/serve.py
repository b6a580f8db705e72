"""`layerlab serve`: a head without a window, and the same HTTP front on that head that the
window's "Let other apps use this model" switch opens. The front (routes, key, relay) lives in
core/front_routes.py and the listening rules in core/api_front.py, below the head, so the
head can hold the window's switch; this is where `serve` imports them from."""

from __future__ import annotations

from layerlab.core.api_front import bind_problem
from layerlab.core.front_routes import create_front

__all__ = ["bind_problem", "create_front"]
