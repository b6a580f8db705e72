"""How long each generated token waits on each worker: "bench-box: waits 3.1 ms/token".

The head's forwarder for a worker counts the seconds llama.cpp spends waiting on that
worker's answers (relay.pump: from a request's first byte to its answer's last, so the
worker's compute and the link both ways, and nothing of the head's own work). An answer
brackets those counters: at its first streamed piece (the prompt is decoded by then) and at
its end, where llama.cpp's own timings say how many generation decodes ran (`predicted_n`)
and how long they took (`predicted_ms`). Waiting / predicted_n is the number shown; while
the answer streams, the pieces so far stand in for predicted_n.

Only workers reached through a link are measured. A plain worker (a bare llama.cpp
rpc-server, unpaired) is dialled by llama.cpp itself: measuring it would mean putting a
Python relay (relay.pump without TLS) on its per-token path. bench/token_waits.py measured
exactly that hop on loopback (one plain worker, all layers, 96 greedy tokens, interleaved
pairs on this noisy 2-core machine): relayed / direct generation tok/s was 0.93 as a ratio
of medians (67.7 vs 62.8 tok/s) and 0.93, 0.80, 0.48 pair by pair. A person who runs a
plain worker chose the fastest, simplest path; a hop that costs 7% or more of their tokens
to count them is the wrong trade, and a forwarder that always accepts would also hide a
killed worker's refused port (the supervisor's quickest diagnosis). So a plain worker's
row in the Workers list says the number is measured for paired workers, rather than
showing nothing or taxing every token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LIVE_EVERY_S = 0.5  # while streaming, publish at a human rate


@dataclass(frozen=True)
class TokenWait:
    """Per worker, for one answer: the ms per generated token the head waited on it."""

    ms_per_token: float
    token_ms: float | None  # the whole ms per token (llama.cpp's own when final)
    tokens: int  # generation decodes counted
    final: bool  # from llama.cpp's timings at the end, not a live estimate

    @property
    def share(self) -> float | None:
        """The part of each token's time spent waiting on this worker (0..1)."""
        return self.ms_per_token / self.token_ms if self.token_ms else None

    @property
    def text(self) -> str:
        """'waits 3.1 ms/token' (live: 'waits ~3.1 ms/token')."""
        approx = "" if self.final else "~"
        return f"waits {approx}{self.ms_per_token:.1f} ms/token"


class AnswerWaits:
    """One answer. Call `piece()` per streamed piece and `finish(timings)` at the end.

    `waited()` returns the cumulative seconds waited per worker address (HeadLinks.waited_s);
    `publish(waits)` receives live estimates (at most every LIVE_EVERY_S) and the final
    numbers. Workers that the answer did not wait on at all (not in the loaded model) are
    left out. Thread-safe; no Qt.
    """

    def __init__(
        self,
        waited: Callable[[], dict[str, float]],
        publish: Callable[[dict[str, TokenWait]], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        live_every_s: float = LIVE_EVERY_S,
    ):
        self._waited = waited
        self._publish = publish or (lambda waits: None)
        self._now = now
        self._live_every = live_every_s
        self._lock = threading.Lock()
        self._base: dict[str, float] | None = None
        self.first: float | None = None
        self.last: float | None = None
        self.pieces = 0
        self._published = 0.0
        self.result: dict[str, TokenWait] | None = None

    def piece(self) -> None:
        t = self._now()
        with self._lock:
            if self.result is not None:
                return
            if self._base is None:
                # The first piece came out of the prompt's decode: generation starts here.
                self._base = self._waited()
                self.first = self._published = t
            self.last = t
            self.pieces += 1
            due = self.pieces > 1 and t - self._published >= self._live_every
            if due:
                self._published = t
        if due:
            self._publish(self.live())

    def live(self) -> dict[str, TokenWait]:
        with self._lock:
            if self._base is None or self.pieces < 2 or self.first is None or self.last is None:
                return {}
            n = self.pieces - 1
            token_ms = (self.last - self.first) * 1000 / n
            base = self._base
        return self._per_worker(base, n, token_ms, final=False)

    def finish(self, timings: dict) -> dict[str, TokenWait]:
        """Final numbers from llama.cpp's timings (`predicted_n`, `predicted_ms`)."""
        with self._lock:
            if self.result is not None:
                return self.result
            base = self._base
            n = int(timings.get("predicted_n") or 0)
            ms = timings.get("predicted_ms")
        result: dict[str, TokenWait] = {}
        if base is not None and n > 0:
            result = self._per_worker(base, n, ms / n if ms else None, final=True)
        with self._lock:
            self.result = result
        self._publish(result)
        return result

    def _per_worker(
        self, base: dict[str, float], n: int, token_ms: float | None, final: bool
    ) -> dict[str, TokenWait]:
        now = self._waited()
        out = {}
        for address, total in now.items():
            waited = total - base.get(address, total)
            if waited > 0:
                out[address] = TokenWait(waited * 1000 / n, token_ms, n, final)
        return out
