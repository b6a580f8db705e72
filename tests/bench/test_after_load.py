"""After a load, a few tokens measured while idle teach the speed model, and a load that
leaves threads to llama.cpp gets the count measured best here; a chat request sent while it
measures waits for the step in flight at most (no step starts after it was sent)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from layerlab.core.engine.supervisor import Failed, Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.calibration import Calibration, device_identity
from layerlab.core.planner.inputs import this_machine_devices

pytestmark = pytest.mark.slow


def wait_ready(head: Head, timeout: float = 120) -> Ready:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not isinstance(head.state, Ready | Failed):
        time.sleep(0.02)
    state = head.state
    assert isinstance(state, Ready), getattr(state, "message", state)
    return state


def wait_after_load(head: Head, state: Ready):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = getattr(head, "after_load", None)
        if job is not None and job.state is state:
            return job
        time.sleep(0.01)
    raise AssertionError("no measurement started after the load")


@pytest.fixture
def head(tmp_path):
    h = Head(persist=False, state_dir=tmp_path / "head", watch=WatchSettings(interval_s=0.3))
    yield h
    h.close()


def host_identity() -> str:
    host = next(d for d in this_machine_devices() if d.is_host)
    return device_identity(host.machine, host.name)


def test_a_load_records_this_machine_and_loads_with_the_threads_measured_best(
    head, demo_model, tmp_path
):
    path = head.bench.calibration_path
    assert path is not None
    # a figure from an earlier bench: far too slow, and its best thread count
    llama_default = max(1, (os.cpu_count() or 2) // 2)  # llama-cpp-python's default
    best = 2 if llama_default == 1 else 1
    cal = Calibration(path, now=lambda: time.time() - 3600)
    cal.record_device(host_identity(), 2e8, threads=best)
    cal.save()

    head.load(LoadPlan(str(demo_model), n_ctx=512))
    state = wait_ready(head)
    assert state.loaded["n_threads"] == best  # the measured count, not half the cores

    job = wait_after_load(head, state)
    assert job.done.wait(60)
    assert job.stopped_because == "" and job.tok_s and job.tok_s > 0
    assert job.learned and "GB/s" in job.learned[0]
    raw = json.loads(path.read_text())["devices"][host_identity()]
    assert raw["bandwidth"] != 2e8  # learned from this load
    assert raw["measured_at"] > time.time() - 120
    assert raw["threads"] == best  # a load does not sweep threads: the bench's count stays


def test_a_chat_request_waits_for_the_step_in_flight_at_most(head, demo_model):
    head.load(LoadPlan(str(demo_model), n_ctx=512))
    state = wait_ready(head)
    job = wait_after_load(head, state)
    assert job.stepping.wait(30)  # a measurement step is on its way to the engine
    client = head.client()
    assert client is not None
    events: list = []
    chat = threading.Thread(
        target=lambda: events.extend(
            client.stream_chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        )
    )
    chat.start()
    # The moment the engine has the request in line (what the measurement can see): from
    # then on no step may start; the one in flight is the most the request waits for.
    seen = None
    while chat.is_alive() and seen is None:
        status = client.status()
        if status.get("running") or status.get("waiting"):
            seen = time.monotonic()
    chat.join(60)
    assert events and type(events[-1]).__name__ == "Finished"
    assert job.done.wait(30)
    assert job.stopped_because == "a request came in"
    if seen is not None:
        assert not [s for s in job.steps if s.started > seen]
    assert not job.learned
