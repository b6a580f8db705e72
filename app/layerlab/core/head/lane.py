"""One serial lane with timers, for the head (Anki's single task lane is the model).

Engine starts and stops, timed reloads and the checks on lost workers run here, one after the
other and never on a caller's thread, so the window's GUI thread never waits on an engine
that takes seconds to stop.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class SerialLane:
    """One serial lane with timers (Anki's single lane): engine starts and stops, timed
    reloads and return checks run here in order, never on a caller's thread."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None]):
        self._on_error = on_error
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], object], delay_s: float = 0.0) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._queue, (time.monotonic() + delay_s, next(self._seq), fn))
            self._cond.notify()

    def close(self, wait_s: float = 0.0) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()
        if wait_s > 0 and threading.current_thread() is not self._thread:
            self._thread.join(wait_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._queue)
            try:
                fn()
            except Exception as e:  # a view's callback or a probe must not end the lane
                self._on_error(e)
