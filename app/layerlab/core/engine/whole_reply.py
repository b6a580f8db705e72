"""A whole (not streamed) reply, stopped when its client leaves before it is written.

Starlette runs a plain route to its end whether or not anybody still waits for it: a client
that gave up (a script's timeout, an app closed, a phone asleep) left its answer writing up
to max_tokens, holding a slot the whole time, while the rest of the household waited. Here
the answer is collected while the connection is watched, as EventStream watches a stream's:
whichever ends first decides. A client gone cancels the collection, whose generator's
cleanup stops the answer, and the decoder frees its slot at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.responses import Response

from layerlab.core.engine.sse import AnswerResponse, client_gone


class WholeReply(AnswerResponse):
    """Sends what `reply()` makes (a Response), unless the client disconnects first. `on_end`
    runs once, when the reply is made or however it ends before."""

    def __init__(
        self, reply: Callable[[], Awaitable[Response]], on_end: Callable[[], None] | None = None
    ):
        super().__init__(on_end)
        self._reply = reply

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        made = asyncio.ensure_future(self._reply())
        gone = asyncio.ensure_future(client_gone(receive))
        try:
            await asyncio.wait({made, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            if not made.done():  # the client left (or this request was cancelled)
                made.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await made
            self._end()  # its place in line goes back before the reply is sent
        if made.cancelled():
            return  # nobody to send it to
        await made.result()(scope, receive, send)
