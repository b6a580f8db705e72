"""The one way a core object tells its listeners: a thread-safe list of callbacks.

Views (the Qt adapters, `serve`, the CLI) subscribe and get an unsubscribe call back; one
listener that raises never stops the others or the object that tells them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscribers(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[T], object]] = []

    def add(self, callback: Callable[[T], object]) -> Callable[[], None]:
        """Subscribe `callback`; returns the call that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def tell(self, value: T) -> None:
        """Call every subscriber with `value`, on the caller's thread."""
        with self._lock:
            callbacks = list(self._callbacks)
        for cb in callbacks:
            with contextlib.suppress(Exception):  # one bad listener must not stop the rest
                cb(value)
