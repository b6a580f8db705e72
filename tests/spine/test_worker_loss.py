"""A worker that dies or freezes mid-answer: the head reports it fast, names it, and
reloads without it; nothing but the engine process is lost."""

from __future__ import annotations

import time

import pytest

from layerlab.core.engine.client import Delta, EngineUnavailable
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.spine.engine_helpers import answer, load

LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


def _stream_until_error(client, after_tokens: int, fault) -> tuple[float, Exception]:
    """Stream; after some tokens apply the fault; return seconds from fault to the error."""
    n = 0
    t_fault = None
    try:
        for ev in client.stream_chat(LONG, max_tokens=2000, temperature=0):
            if isinstance(ev, Delta):
                n += 1
                if n == after_tokens:
                    fault()
                    t_fault = time.monotonic()
    except EngineUnavailable as e:
        assert t_fault is not None, f"failed before the fault: {e}"
        return time.monotonic() - t_fault, e
    pytest.fail("the stream finished although a worker was lost")


def test_kill_9_worker_mid_generation(demo_model, start_worker):
    w1, w2 = start_worker(), start_worker()
    plan = LoadPlan(
        str(demo_model),
        n_ctx=2048,
        devices=[DeviceRef.rpc(w1.endpoint), DeviceRef.rpc(w2.endpoint)],
        tensor_split=[1, 2],
    )
    sup, _ = load(plan)
    try:
        took, _err = _stream_until_error(sup.client(), 5, w2.kill)
        assert took < 2.0, f"the client saw the loss after {took:.2f} s"
        state = sup.wait_for((Failed,), 10)
        assert state.lost_workers == [w2.endpoint]
        assert w2.endpoint in state.message and "conversation is kept" in state.message
        # one call reloads without it, and the model answers again from w1 alone
        w1.wait_idle()
        sup.reload_without_lost()
        ready = sup.wait_for((Ready, Failed), 60)
        assert isinstance(ready, Ready), ready
        assert set(ready.placement.layer_devices) == {f"RPC {w1.endpoint}"}
        assert answer(sup.client(), max_tokens=8)[0]
    finally:
        sup.stop()


def test_sigstop_worker_mid_generation_is_caught_by_the_watchdog(demo_model, start_worker):
    w1 = start_worker()
    plan = LoadPlan(
        str(demo_model), n_ctx=2048, devices=[DeviceRef.rpc(w1.endpoint)], n_gpu_layers=15
    )
    sup, _ = load(plan)
    try:
        took, _ = _stream_until_error(sup.client(), 5, w1.freeze)
        assert took < 10.0, f"the client saw the freeze after {took:.2f} s"
        state = sup.wait_for((Failed,), 10)
        assert state.lost_workers == [w1.endpoint] and "stopped answering" in state.message
        sup.reload_without_lost()  # CPU only now
        ready = sup.wait_for((Ready, Failed), 60)
        assert isinstance(ready, Ready) and set(ready.placement.layer_devices) == {"CPU"}
    finally:
        w1.thaw()
        sup.stop()


def test_worker_lost_while_idle_is_noticed_before_the_next_question(demo_model, start_worker):
    w1 = start_worker()
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(w1.endpoint)]))
    try:
        w1.kill()
        state = sup.wait_for((Failed,), 10)
        assert state.lost_workers == [w1.endpoint]
    finally:
        sup.stop()


def test_stop_while_loading_leaves_nothing_running(demo_model):
    from layerlab.core.engine.supervisor import EngineSupervisor, Stopped
    from tests.spine.test_probe import _engine_children

    states = []
    sup = EngineSupervisor(on_state=states.append)
    sup.start(LoadPlan(str(demo_model), n_ctx=512))
    deadline = time.monotonic() + 20
    while _engine_children() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the engine process is up and loading
    sup.stop()
    time.sleep(1.0)  # a late event from the stopped engine must not revive it
    assert isinstance(sup.state, Stopped) and isinstance(states[-1], Stopped)
    assert not any(isinstance(s, Ready) for s in states)
    assert _engine_children() == 0


def _feed_threads(address: str) -> int:
    import threading

    return sum(1 for t in threading.enumerate() if t.name == f"worker-feed {address}")


def test_the_feed_calling_a_worker_silent_unloads_the_model(demo_model, worker):
    """The supervisor hears of lost workers from the head's feed: the one poller per worker
    that also drives the gauges. Here the feed reads through a link that stops delivering."""
    import threading

    from layerlab.core.cluster.status import read_plain_status
    from layerlab.core.cluster.worker_feed import WorkerFeed
    from layerlab.core.engine.supervisor import EngineSupervisor

    link_up = threading.Event()
    link_up.set()

    def read(address: str, timeout: float):
        return read_plain_status(address, timeout) if link_up.is_set() else None

    feed = WorkerFeed(read=read, interval_s=0.3, silence_s=1.5)
    feed.watch(worker.endpoint)  # the head watches it already
    sup = EngineSupervisor(feed=feed)
    try:
        sup.start(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)]))
        assert isinstance(sup.wait_for((Ready, Failed), 60), Ready)
        link_up.clear()
        t = time.monotonic()
        state = sup.wait_for((Failed,), 10)
        assert time.monotonic() - t < 5
        assert state.cause == "worker_lost" and state.lost_workers == [worker.endpoint]
        assert "stopped answering" in state.message and state.can_reload_without
    finally:
        sup.close()
    assert feed.watched() == [worker.endpoint]  # the head's watch is the head's to end
    feed.close()


def test_a_supervisor_without_a_feed_polls_through_its_own_and_closes_it(demo_model, worker):
    from layerlab.core.engine.supervisor import EngineSupervisor

    sup = EngineSupervisor()
    sup.start(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)]))
    try:
        assert isinstance(sup.wait_for((Ready, Failed), 60), Ready)
        assert _feed_threads(worker.endpoint) == 1  # one poller for this worker
    finally:
        sup.close()
    deadline = time.monotonic() + 5
    while _feed_threads(worker.endpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _feed_threads(worker.endpoint) == 0


class _SlowLinks:
    """Routes whose link takes a second to open, as a paired worker's can over Wi-Fi."""

    def engine_endpoint(self, address: str) -> str:
        time.sleep(1.0)
        return address

    def problem(self, address: str) -> str:
        return ""

    def label(self, address: str) -> str:
        return address


def test_before_the_engine_starts_the_probe_speaks_for_a_dead_worker(demo_model):
    """The feed calls a dead address "gone" at once; the probe's words say more (what is
    wrong with the address), so they are the ones the person reads."""
    from layerlab.core.engine.supervisor import EngineSupervisor
    from tests.conftest import free_port_pair

    sup = EngineSupervisor(routes=_SlowLinks())
    try:
        dead = f"127.0.0.1:{free_port_pair()}"
        sup.start(LoadPlan(str(demo_model), devices=[DeviceRef.rpc(dead)]))
        state = sup.wait_for((Failed,), 10)
        assert "Nothing is listening" in state.message, state.message
        assert state.cause == "worker_lost" and state.lost_workers == [dead]
    finally:
        sup.close()
