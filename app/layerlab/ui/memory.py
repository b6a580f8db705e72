"""Python's cycle collector and a window that must not stutter.

A full collection walks every tracked object, holding the GIL for all of it: with PySide6's
wrappers, the modules and a long conversation shown, one took 35-52 ms here, so the window
stalled whenever one ran (a send allocates ~10k objects, which sets one off). What the start
built lives as long as the app; gc.freeze() moves it out of the collector's walk (one full
collection then took 1.9 ms). New garbage is collected as before; what was frozen is still
freed when its last reference goes, only a cycle among frozen objects would stay.
"""

from __future__ import annotations

import gc

SETTLE_AFTER_MS = 1500  # after the first paints and the start's own loading


def settle_after_start() -> None:
    """Collect once (on purpose, at the start, where a pause is expected), then freeze."""
    gc.collect()
    gc.freeze()
