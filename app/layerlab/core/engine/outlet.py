"""Where the decoder's pieces reach the HTTP server's event loop.

The decoder thread puts each request's items into its outlet as they come and rings it once
a loop turn, just before its next llama_decode (batch_decoder.Outlet). The loop is woken
only when the request's reader is waiting, and then once for everything that came in that
turn. Before, each request had a thread of its own that slept on a queue and woke the loop:
two thread wake-ups a token per answer, the first in the middle of the decoder's sampling,
on a machine whose cores all run llama.cpp's compute threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class LoopOutlet:
    """One request's (index, item) pairs, for a reader on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque = collections.deque()
        self._arrived = asyncio.Event()
        self._waiting = False  # the reader sleeps until rung

    # -- the decoder thread -----------------------------------------------------------------
    def put(self, item: tuple[int, object]) -> None:
        self._items.append(item)

    def ring(self) -> None:
        if self._waiting:
            self._waiting = False
            # a closed loop has nobody left to read
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._arrived.set)

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
