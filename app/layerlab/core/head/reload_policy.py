"""What the head does when the model is lost: the one place that decides reloads.

- A lost worker: load again without it (at once), when reloading is automatic (always for
  `serve`; the window's setting, on by default). Otherwise the person is offered the reload.
- The engine itself died, froze or stalled (kill -9, the OOM killer, a llama.cpp abort):
  load the same plan again after a short wait, a bounded number of times with growing waits;
  a model that stays up for `settle_s` earns its tries back. Then give up, in words.
- A model that cannot load (a damaged file, a plan that does not fit, an engine that cannot
  start): loading again would fail the same way, so nothing is retried.

Pure logic on the supervisor's `Failed` states, with an injectable clock, so it is tested
without processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from layerlab.core.engine.supervisor import Failed

ENGINE_CAUSES = {"engine_died", "engine_frozen", "stalled"}


@dataclass(frozen=True)
class ReloadWithout:
    workers: list[str]


@dataclass(frozen=True)
class RetryIn:
    delay_s: float
    attempt: int  # 1-based
    of: int


@dataclass(frozen=True)
class Offer:
    """Reloading is not automatic: the view shows what one click would do."""


@dataclass(frozen=True)
class GiveUp:
    message: str


@dataclass(frozen=True)
class Leave:
    """Nothing to retry (the model cannot load as planned)."""


Decision = ReloadWithout | RetryIn | Offer | GiveUp | Leave


class ReloadPolicy:
    def __init__(
        self,
        automatic: bool = True,
        delays_s: tuple[float, ...] = (1.0, 5.0, 15.0),
        settle_s: float = 60.0,
        now: Callable[[], float] = time.monotonic,
    ):
        self.automatic = automatic
        self.delays_s = delays_s
        self.settle_s = settle_s
        self._now = now
        self._tries = 0
        self._ready_since: float | None = None

    def on_ready(self) -> None:
        self._ready_since = self._now()

    def on_stopped(self) -> None:
        """The person unloaded (or loaded another plan): a fresh count for the next model."""
        self._tries = 0
        self._ready_since = None

    def on_failed(self, state: Failed) -> Decision:
        cause = state.cause
        if self._ready_since is not None and self._now() - self._ready_since >= self.settle_s:
            self._tries = 0  # it ran well for a while: this is a new trouble, not the same one
        self._ready_since = None
        if cause == "worker_lost" and state.can_reload_without:
            return ReloadWithout(list(state.lost_workers)) if self.automatic else Offer()
        if cause in ENGINE_CAUSES and state.plan is not None:
            if not self.automatic:
                return Offer()
            if self._tries >= len(self.delays_s):
                return GiveUp(
                    f"The engine stopped {self._tries + 1} times in a row, so LayerLab stopped "
                    "loading it again by itself. Press Load to try once more, or choose a "
                    "smaller context or another plan in the layer map."
                )
            delay = self.delays_s[self._tries]
            self._tries += 1
            return RetryIn(delay, self._tries, len(self.delays_s))
        return Leave()
