"""Where the decoder's pieces reach the HTTP server's event loop.

The decoder thread puts each request's items into its outlet as they come and rings it once
a loop turn, just before its next llama_decode (batch_decoder.Outlet). The loop is woken
only when the request's reader is waiting, and then once for everything that came since.
Before, each request had a thread of its own that slept on a queue and woke the loop: two
thread wake-ups a token per answer, the first in the middle of the decoder's sampling, on a
machine whose cores all run llama.cpp's compute threads.

A reader is woken at most every WAKE_EVERY_S while its answer streams, and at once for the
answer's first piece and its end: a small model on a fast machine writes a token every
~10 ms, and each wake-up costs a socket write and a wake-up of the client too (the send was
most of the loop's time per token, cProfile). Fifty updates a second is more than a person
reads; what waits is rung on the decoder's next turn. A whole (not streamed) reply's reader is
woken only at an answer's end (ONLY_AT_THE_END): it has nothing to send before, and waking it
every 20 ms cost the event loop ~60 µs a token (bench/per_core.py --whole).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

from layerlab.core.engine.batch_decoder import DONE

WAKE_EVERY_S = 0.02
ONLY_AT_THE_END = float("inf")


class LoopOutlet:
    """One request's (index, item) pairs, for a reader on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake_every: float = WAKE_EVERY_S) -> None:
        self._loop = loop
        self._wake_every = wake_every
        self._items: collections.deque = collections.deque()
        self._arrived = asyncio.Event()
        self._waiting = False  # the reader sleeps until rung
        self._woken = 0.0  # when the reader was last woken (the decoder's clock)
        self._ending = False  # an answer's end is among the items: wake now

    # -- the decoder thread -----------------------------------------------------------------
    def put(self, item: tuple[int, object]) -> None:
        self._items.append(item)
        if item[1] is DONE:
            self._ending = True

    def ring(self) -> bool:
        """Wake the reader if it waits. False: not yet (woken under `wake_every` ago);
        the decoder rings again on its next turn."""
        if not self._waiting:
            return True
        now = time.monotonic()
        if not self._ending and now - self._woken < self._wake_every:
            return False
        self._waiting = self._ending = False
        self._woken = now
        # a closed loop has nobody left to read
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._arrived.set)
        return True

    # -- the event loop ---------------------------------------------------------------------
    async def take(self) -> list[tuple[int, object]]:
        """Everything that has come, waiting for the first when nothing has."""
        while not self._items:
            self._arrived.clear()
            self._waiting = True
            if self._items:  # came between the look and the flag (its ring may have missed it)
                self._waiting = False
                break
            await self._arrived.wait()
        items = self._items
        return [items.popleft() for _ in range(len(items))]
