"""The reload policy on the supervisor's Failed states, with a hand-driven clock."""

from __future__ import annotations

from layerlab.core.engine.supervisor import Failed
from layerlab.core.head.reload_policy import (
    GiveUp,
    Leave,
    Offer,
    ReloadPolicy,
    ReloadWithout,
    RetryIn,
)
from layerlab.core.load_plan import DeviceRef, LoadPlan

PLAN = LoadPlan("m.gguf", devices=[DeviceRef.rpc("10.0.0.5:50052")])


def failed(cause: str, lost: list[str] | None = None) -> Failed:
    return Failed(PLAN, "it went", lost or [], cause=cause)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_lost_worker_is_left_out_at_once_when_automatic():
    p = ReloadPolicy(automatic=True)
    assert p.on_failed(failed("worker_lost", ["10.0.0.5:50052"])) == ReloadWithout(
        ["10.0.0.5:50052"]
    )
    assert p.on_failed(failed("worker_lost", ["10.0.0.5:50052"])) == ReloadWithout(
        ["10.0.0.5:50052"]
    )  # not counted against the engine's tries


def test_off_means_an_offer_for_every_kind_of_loss():
    p = ReloadPolicy(automatic=False)
    assert p.on_failed(failed("worker_lost", ["10.0.0.5:50052"])) == Offer()
    assert p.on_failed(failed("engine_died")) == Offer()
    assert p.on_failed(failed("engine_frozen")) == Offer()


def test_a_dying_engine_is_retried_with_growing_waits_then_given_up():
    clock = Clock()
    p = ReloadPolicy(automatic=True, delays_s=(1.0, 5.0, 15.0), now=clock)
    assert p.on_failed(failed("engine_died")) == RetryIn(1.0, 1, 3)
    p.on_ready()
    clock.t += 5  # up a few seconds only: the same trouble
    assert p.on_failed(failed("engine_frozen")) == RetryIn(5.0, 2, 3)
    assert p.on_failed(failed("stalled")) == RetryIn(15.0, 3, 3)
    decision = p.on_failed(failed("engine_died"))
    assert isinstance(decision, GiveUp)
    assert "stopped 4 times in a row" in decision.message and "Load" in decision.message


def test_a_model_that_stayed_up_earns_its_tries_back():
    clock = Clock()
    p = ReloadPolicy(automatic=True, delays_s=(1.0, 5.0), settle_s=60.0, now=clock)
    assert p.on_failed(failed("engine_died")) == RetryIn(1.0, 1, 2)
    assert p.on_failed(failed("engine_died")) == RetryIn(5.0, 2, 2)
    p.on_ready()
    clock.t += 61
    assert p.on_failed(failed("engine_died")) == RetryIn(1.0, 1, 2)


def test_the_persons_own_load_starts_a_fresh_count():
    p = ReloadPolicy(automatic=True, delays_s=(1.0,))
    assert p.on_failed(failed("engine_died")) == RetryIn(1.0, 1, 1)
    assert isinstance(p.on_failed(failed("engine_died")), GiveUp)
    p.on_stopped()
    assert p.on_failed(failed("engine_died")) == RetryIn(1.0, 1, 1)


def test_what_cannot_load_is_not_retried():
    p = ReloadPolicy(automatic=True)
    for cause in ("load_failed", "start_failed", "link"):
        assert p.on_failed(failed(cause)) == Leave()
    # a lost worker with nothing left to load without it is not a reload either
    assert p.on_failed(Failed(None, "x", ["10.0.0.5:50052"], cause="worker_lost")) == Leave()
