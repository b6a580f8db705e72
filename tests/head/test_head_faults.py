"""The head under faults tried from the outside, with the real engine on the demo model and
real workers on loopback: a killed engine, a frozen engine, a worker that comes back.

Each was seen to fail before the head existed: `serve` answered 503 for as long as it ran
after an engine kill, said "ok" while the engine was frozen, and never took a worker back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from layerlab.core.engine.supervisor import Failed, Ready, WatchSettings
from layerlab.core.head import Head, Notice, WorkerBack
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.conftest import WorkerProcess, engine_pid, free_port_pair

pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self, head: Head):
        self.events: list = []
        self._lock = threading.Lock()
        head.subscribe(self._add)

    def _add(self, event) -> None:
        with self._lock:
            self.events.append(event)

    def notices(self) -> list[str]:
        with self._lock:
            return [e.text for e in self.events if isinstance(e, Notice)]

    def offers(self) -> list[WorkerBack]:
        with self._lock:
            return [e for e in self.events if isinstance(e, WorkerBack)]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ready(head: Head, timeout: float = 90) -> Ready:
    wait_until(lambda: isinstance(head.state, Ready | Failed), timeout, "a load")
    state = head.state
    assert isinstance(state, Ready), getattr(state, "message", state)
    return state


@pytest.fixture
def make_head(tmp_path):
    made: list[Head] = []

    def make(**kw) -> Head:
        kw.setdefault("watch", WatchSettings(interval_s=0.3))
        head = Head(persist=False, state_dir=tmp_path / "head", **kw)
        made.append(head)
        return head

    yield make
    for head in made:
        head.close()


def test_a_killed_engine_is_loaded_again_by_itself_and_said_in_words(make_head, demo_model):
    head = make_head(automatic=True)
    seen = Recorder(head)
    head.load(LoadPlan(str(demo_model), n_ctx=512))
    wait_ready(head)
    first = engine_pid()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: head.incidents, 10, "the incident")
    incident = head.incidents[-1]
    assert incident.cause == "engine_died"
    assert "signal 9" in incident.message or "killed" in incident.message
    assert "llama" not in incident.message.lower()  # words, not a scrap of its log
    code, body = head.health()
    assert code == 503 or body["status"] in ("ok", "loading")
    wait_until(lambda: isinstance(head.state, Ready), 60, "the reload")
    assert engine_pid() != first
    assert any("Loading the model again in" in n for n in seen.notices())
    code, body = head.health()
    assert code == 200 and body["last_incident"]["cause"] == "engine_died"


def test_a_frozen_engine_is_noticed_within_10_s_stopped_and_loaded_again(make_head, demo_model):
    head = make_head(automatic=True)
    head.load(LoadPlan(str(demo_model), n_ctx=512))
    wait_ready(head)
    frozen = engine_pid()
    t0 = time.monotonic()
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_until(lambda: head.incidents, 12, "the frozen engine to be noticed")
        noticed = time.monotonic() - t0
        assert noticed < 10.5, noticed
        assert head.incidents[-1].cause == "engine_frozen"
        wait_until(lambda: not psutil.pid_exists(frozen) or _zombie(frozen), 10, "it to end")
        wait_until(lambda: isinstance(head.state, Ready), 60, "the reload")
    finally:
        if psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGCONT)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_lost_worker_that_comes_back_is_taken_back_at_the_next_idle_moment(
    make_head, demo_model, tmp_path
):
    port = free_port_pair()
    worker = WorkerProcess(port, tmp_path)
    head = make_head(automatic=True, use_returning=True, return_check_s=0.5)
    seen = Recorder(head)
    head.add_worker(worker.endpoint)
    plan = LoadPlan(
        str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)], tensor_split=[1]
    )
    try:
        head.load(plan)
        assert f"RPC {worker.endpoint}" in wait_ready(head).placement_text
        worker.kill()
        wait_until(lambda: head.incidents, 5, "the lost worker")
        assert head.incidents[-1].lost_workers == [worker.endpoint]
        ready = wait_ready(head)
        assert ready.plan.workers == []  # loaded again without it
        assert head.health()[1]["left_out"] == [worker.endpoint]

        worker.stop()
        worker = WorkerProcess(port, tmp_path)  # restarted on the same address
        wait_until(
            lambda: isinstance(head.state, Ready) and head.state.plan.workers == [worker.endpoint],
            60,
            "the worker taken back",
        )
        assert any("is back" in n for n in seen.notices())
        assert "left_out" not in head.health()[1]
        assert [w.enabled for w in head.workers()] == [True]
    finally:
        worker.stop()


def test_the_window_offers_a_worker_that_is_back_instead(make_head, demo_model, tmp_path):
    worker = WorkerProcess(free_port_pair(), tmp_path)
    head = make_head(automatic=False, use_returning=False, return_check_s=0.5)
    seen = Recorder(head)
    head.add_worker(worker.endpoint)
    try:
        head.load(
            LoadPlan(
                str(demo_model),
                n_ctx=512,
                devices=[DeviceRef.rpc(worker.endpoint)],
                tensor_split=[1],
            )
        )
        wait_ready(head)
        worker.freeze()
        wait_until(lambda: isinstance(head.state, Failed), 10, "the frozen worker")
        assert head.state.lost_workers == [worker.endpoint]
        time.sleep(1.5)
        assert isinstance(head.state, Failed)  # not automatic: it waits for the person
        worker.thaw()
        wait_until(lambda: seen.offers(), 20, "the offer")
        assert seen.offers()[0].address == worker.endpoint
        offered = head.state
        head.use_worker_again(worker.endpoint)
        wait_until(lambda: head.state is not offered, 10, "the load to start")
        ready = wait_ready(head)
        assert ready.plan.workers == [worker.endpoint]
    finally:
        worker.stop()


def test_a_damaged_model_is_said_in_words_before_llama_cpp_reads_it_and_not_retried(
    make_head, demo_model, tmp_path
):
    from tests.support.damaged_gguf import cut_in_data

    damaged = cut_in_data(Path(demo_model), tmp_path / "cut.gguf")
    head = make_head(automatic=True)
    seen = Recorder(head)
    head.load(LoadPlan(str(damaged), n_ctx=512))
    wait_until(lambda: isinstance(head.state, Failed), 10, "the refusal")
    state = head.state
    assert state.cause == "load_failed"
    assert "damaged or incomplete" in state.message and "cut.gguf" in state.message
    time.sleep(1.5)  # a retry would have started by now (the first wait is 1 s)
    assert head.state is state and not seen.notices()
    with pytest.raises(AssertionError):
        engine_pid()  # no engine was ever started for it
