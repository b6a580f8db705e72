"""Run this in the background, call me back on the GUI thread (Anki's taskman idea).

One serial lane per owner: work that touches the same things (reading a model's header,
probing this machine's hardware) runs one job at a time, off the GUI thread; the result
or the error comes back through a queued signal, so callbacks always run on the GUI thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal


class BackgroundLane(QObject):
    _finished = Signal(object)  # (callback, value), from the lane thread to the GUI thread

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._in_flight = 0
        self._closed = False
        self._finished.connect(self._deliver)

    @property
    def busy(self) -> bool:
        """A job is queued or running, or its answer has not been delivered yet."""
        return self._in_flight > 0

    def submit(
        self,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        failed: Callable[[Exception], None],
    ) -> None:
        if self._closed:
            return
        self._in_flight += 1

        def job() -> None:
            try:
                item = (done, work())
            except Exception as e:  # the person sees it; the lane goes on
                item = (failed, e)
            with contextlib.suppress(RuntimeError):  # the window went away while this ran
                self._finished.emit(item)

        self._pool.submit(job)

    def _deliver(self, item: tuple[Callable[[Any], None], Any]) -> None:
        self._in_flight -= 1
        if not self._closed:
            callback, value = item
            callback(value)

    def close(self) -> None:
        """Drop queued jobs and stop delivering; a running job finishes on its own."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
