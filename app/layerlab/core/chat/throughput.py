"""Live prompt tok/s, generation tok/s and time to first token for one answer."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Rates:
    ttft_s: float | None = None
    prompt_tps: float | None = None
    generation_tps: float | None = None
    tokens: int = 0
    final: bool = False


class AnswerClock:
    """Fed as pieces arrive; estimates live, then takes llama.cpp's own timings at the end.

    Live generation tok/s counts streamed pieces since the first one (llama-cpp-python
    sends one piece per token, holding back only partial UTF-8 / stop-word prefixes).
    """

    def __init__(self, now=time.monotonic):
        self._now = now
        self.started = now()
        self.first: float | None = None
        self.last: float | None = None
        self.pieces = 0

    def piece(self) -> None:
        t = self._now()
        if self.first is None:
            self.first = t
        self.last = t
        self.pieces += 1

    def live(self) -> Rates:
        if self.first is None:
            return Rates()
        ttft = self.first - self.started
        gen = None
        if self.pieces > 1 and self.last and self.last > self.first:
            gen = (self.pieces - 1) / (self.last - self.first)
        return Rates(ttft_s=ttft, generation_tps=gen, tokens=self.pieces)

    def finish(self, timings: dict) -> Rates:
        live = self.live()
        prompt_tps = timings.get("prompt_per_second")
        gen_tps = timings.get("predicted_per_second") or live.generation_tps
        return Rates(
            ttft_s=live.ttft_s,
            prompt_tps=prompt_tps,
            generation_tps=gen_tps,
            tokens=live.tokens,
            final=True,
        )
