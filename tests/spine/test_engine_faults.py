"""The engine itself goes wrong (killed, frozen, a launch overtaken by another): the
supervisor says so in words, with a cause the head can act on, and never serves a stale key."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from layerlab.core.engine.client import Delta, EngineUnavailable
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.spine.engine_helpers import answer, load

LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


def _launches() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "engine-launch")


def test_a_stale_launch_probing_a_slow_worker_leaves_the_new_engine_its_key(
    demo_model, start_worker
):
    slow = start_worker()
    sup = EngineSupervisor(watch=WatchSettings(probe_timeout_s=30))
    try:
        slow.freeze()  # the first launch's probe waits on it
        sup.start(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(slow.endpoint)]))
        time.sleep(0.3)
        sup.start(LoadPlan(str(demo_model), n_ctx=512))  # the person changed their mind
        state = sup.wait_for((Ready, Failed), 60)
        assert isinstance(state, Ready), state
        slow.thaw()  # the stale launch's probe now succeeds, long after it was overtaken
        deadline = time.monotonic() + 20
        while _launches() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _launches() == 1, "the stale launch never stood down"
        assert sup.client().status()["state"] == "idle"  # not 401
        assert answer(sup.client(), max_tokens=3)[0]
    finally:
        slow.thaw()
        sup.stop()
