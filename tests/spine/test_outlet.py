"""The decoder's hand-over to the event loop: a waiting reader is woken for the first piece
at once, then at most every WAKE_EVERY_S while pieces stream, and at once for the end."""

from __future__ import annotations

import asyncio
import threading
import time

from layerlab.core.engine.batch_decoder import DONE
from layerlab.core.engine.outlet import ONLY_AT_THE_END, WAKE_EVERY_S, LoopOutlet


def test_pieces_in_quick_turns_are_handed_over_together_and_the_end_at_once():
    async def main() -> tuple[list[tuple[float, list]], float]:
        outlet = LoopOutlet(asyncio.get_running_loop())
        t0 = time.monotonic()
        ended: list[float] = []

        def decoder() -> None:  # a piece every 5 ms, ringing each turn as the decoder does
            unrung = False
            for i in range(8):
                outlet.put((0, f"piece {i}"))
                unrung = not outlet.ring()
                time.sleep(0.005)
            ended.append(time.monotonic() - t0)
            outlet.put((0, DONE))
            assert outlet.ring() or not unrung

        threading.Thread(target=decoder, daemon=True).start()
        got: list[tuple[float, list]] = []
        while not got or got[-1][1][-1][1] is not DONE:
            got.append((time.monotonic() - t0, await outlet.take()))
        return got, ended[0]

    got, ended = asyncio.run(main())
    items = [item for _, batch in got for _, item in batch]
    assert items == [*(f"piece {i}" for i in range(8)), DONE]  # all, in order
    assert got[0][0] < WAKE_EVERY_S  # the first piece did not wait
    assert len(got) <= 5, got  # eight pieces 5 ms apart came in a few hand-overs
    assert got[-1][0] - ended < WAKE_EVERY_S / 2  # the end did not wait


def test_a_whole_replys_reader_is_woken_once_at_the_end_with_everything():
    async def main() -> tuple[list[list], list[bool]]:
        outlet = LoopOutlet(asyncio.get_running_loop(), ONLY_AT_THE_END)
        rung: list[bool] = []

        def decoder() -> None:  # a piece every 30 ms: a stream's reader would wake for each
            for i in range(6):
                outlet.put((0, f"piece {i}"))
                rung.append(outlet.ring())
                time.sleep(0.03)
            outlet.put((0, DONE))
            rung.append(outlet.ring())

        first = asyncio.ensure_future(outlet.take())
        await asyncio.sleep(0)  # the reader waits before the first piece comes
        ringer = threading.Thread(target=decoder, daemon=True)
        ringer.start()
        got = [await first]
        while got[-1][-1][1] is not DONE:
            got.append(await outlet.take())
        ringer.join(5)  # its last ring wakes the reader before it is written down in `rung`
        return got, rung

    got, rung = asyncio.run(main())
    assert len(got) == 1, got  # one hand-over ...
    assert [item for _, item in got[0]] == [*(f"piece {i}" for i in range(6)), DONE]  # ... of all
    assert rung[-1] and not any(rung[1:-1])  # the decoder rang again each turn until the end
