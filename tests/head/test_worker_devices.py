"""The devices the head plans on: a worker busy serving this head's own model still counts,
with what it said when it was free (the layer map, the chat's longer-context check)."""

from __future__ import annotations

import time

from layerlab.core.engine.supervisor import Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import DeviceRef, LoadPlan


def test_a_worker_busy_with_our_model_still_lends_its_devices(tmp_path, worker, demo_model):
    head = Head(persist=False, state_dir=tmp_path / "head")
    try:
        head.add_worker(worker.endpoint)
        deadline = time.monotonic() + 10
        while worker.endpoint not in head.results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert head.results[worker.endpoint].ok
        free = head.worker_devices()
        assert [d.ref.endpoint for d in free] == [worker.endpoint]

        plan = LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)])
        head.load(plan)
        deadline = time.monotonic() + 60
        while not isinstance(head.state, Ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert isinstance(head.state, Ready), head.state
        head.check(worker.endpoint)  # it now serves our engine: "busy"
        deadline = time.monotonic() + 10
        while worker.endpoint not in head.results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert head.results[worker.endpoint].kind == "busy"
        assert head.worker_devices() == free
        head.set_enabled(worker.endpoint, False)
        assert head.worker_devices() == []
    finally:
        head.close()
