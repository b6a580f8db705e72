"""Server-sent events for a streamed answer: the path each token takes to the client.

A plain ASGI response, not sse-starlette's: that one wraps every event in an anyio cancel
scope with a send timeout and encodes it through its event class, which came to about a
third of the event loop's time per token here (py-spy, the demo model at ~90 tok/s). On a
machine whose cores all run llama.cpp's compute threads, every microsecond the loop spends
is taken from them. What it did per request stays: a keep-alive comment in long silences
(a long prompt being read), and the answer is stopped when the client goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

PING_S = 15.0  # a comment line after this long without an event keeps proxies from closing
STALLED_S = 60.0  # a client that has taken nothing for this long has stopped reading
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx and the like pass events on as they come
]


class AnswerResponse(Response):
    """A response that makes its answer while it watches the client, and runs `on_end` once
    (its place in line goes back). A Starlette Response only so that FastAPI hands it on
    as it is; it sends everything itself."""

    def __init__(self, on_end: Callable[[], None] | None) -> None:
        self.background = None  # FastAPI attaches its background tasks here (none are used)
        self._on_end = on_end

    def _end(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()


class EventStream(AnswerResponse):
    """Sends each bytes `events` yields (whole `data: ...` events) as it comes; when the
    client disconnects, the events' generator is cancelled (its cleanup stops the answer),
    and `on_end` runs once: when the events are all made, or however the response ends
    before."""

    def __init__(self, events: AsyncIterator[bytes], on_end: Callable[[], None]) -> None:
        super().__init__(on_end)
        self._events = events
        self._last_sent = time.monotonic()
        self._ending = False  # the last body message is on its way: no comment after it
        self._sending_since: float | None = None  # a send waiting for the client to read

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            body = asyncio.ensure_future(self._send_events(send))
            gone = asyncio.ensure_future(client_gone(receive))
            ping = asyncio.ensure_future(self._ping(send))
            try:
                await asyncio.wait({body, gone, ping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (body, gone, ping):
                    task.cancel()
                # the generator's cleanup (the answer's stop) runs inside the cancelled task;
                # a send to a client that has gone fails with an OSError: nobody to tell
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await body
                for task in (gone, ping):
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task
        finally:
            self._end()

    async def _send_events(self, send) -> None:
        async for data in self._events:
            self._last_sent = self._sending_since = time.monotonic()
            await send({"type": "http.response.body", "body": data, "more_body": True})
            self._sending_since = None
        # The answer is written: its place in line goes back now, not when a client that
        # stopped reading (a SIGSTOPped app, a phone asleep) takes the rest, if ever.
        self._end()
        self._ending = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _ping(self, send) -> None:
        """A comment in long silences; returns (ending the response, and with it the
        answer) when a send has waited STALLED_S for a client that no longer reads (a
        stopped app would otherwise hold its place in line for good)."""
        while True:
            await asyncio.sleep(min(PING_S, STALLED_S) / 3)
            if self._ending:  # the last message is going: nothing after it
                continue
            now = time.monotonic()
            if self._sending_since is not None and now - self._sending_since >= STALLED_S:
                return
            if self._sending_since is None and now - self._last_sent >= PING_S:
                self._last_sent = now
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})


async def client_gone(receive) -> None:
    """Returns when the client has disconnected (its request's body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
