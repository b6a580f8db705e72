"""WorkerFeed against real workers on loopback: frozen, killed, plain, and back again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from layerlab.core.cluster.status import WorkerStatus
from layerlab.core.cluster.worker_feed import WorkerFeed, WorkerReading
from tests.conftest import free_port_pair
from tests.support.plain_rpc import PlainRpcServer

INTERVAL_S = 0.5
SILENCE_S = 3.0


class Heard:
    """Every reading a subscriber was given, to wait on."""

    def __init__(self, feed: WorkerFeed):
        self.readings: list[tuple[float, WorkerReading]] = []
        self._cv = threading.Condition()
        self.unsubscribe = feed.subscribe(self._on)

    def _on(self, r: WorkerReading) -> None:
        with self._cv:
            self.readings.append((time.monotonic(), r))
            self._cv.notify_all()

    def wait_state(
        self, state: str, timeout: float, after: float = 0.0
    ) -> tuple[float, WorkerReading]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for t, r in self.readings:
                    if t >= after and r.state == state:
                        return t, r
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [r.state for _, r in self.readings]
                    raise AssertionError(f"no {state!r} within {timeout} s; heard {got}")
                self._cv.wait(left)


@pytest.fixture
def feed() -> Iterator[WorkerFeed]:
    f = WorkerFeed(interval_s=INTERVAL_S, silence_s=SILENCE_S, timeout_s=1.0)
    yield f
    f.close()


def test_a_frozen_worker_goes_silent_in_time_and_comes_back(feed, worker):
    heard = Heard(feed)
    feed.watch(worker.endpoint)
    feed.watch(worker.endpoint)  # idempotent: still one poller
    assert feed.watched() == [worker.endpoint]
    _, ok = heard.wait_state("ok", 15)
    assert isinstance(ok.status, WorkerStatus) and ok.status.rpc_port == worker.port
    assert ok.status.devices[0].name == "CPU" and ok.seen is not None

    frozen_at = time.monotonic()
    worker.freeze()
    try:
        t, silent = heard.wait_state("silent", SILENCE_S + INTERVAL_S + 5, after=frozen_at)
        assert t - frozen_at <= SILENCE_S + INTERVAL_S
        assert "stopped answering" in silent.problem and silent.status is not None
        assert feed.reading(worker.endpoint).state == "silent"
    finally:
        worker.thaw()
    thawed_at = time.monotonic()
    _, back = heard.wait_state("ok", 10, after=thawed_at)
    assert back.seen > thawed_at - 0.01


def test_a_killed_worker_is_gone_and_still_watched(feed, worker):
    heard = Heard(feed)
    feed.watch(worker.endpoint)
    heard.wait_state("ok", 15)
    killed_at = time.monotonic()
    worker.kill()
    t, gone = heard.wait_state("gone", 5, after=killed_at)
    assert "refuses connections" in gone.problem
    assert gone.status is not None  # the last good document stays
    assert t - killed_at < 2 * INTERVAL_S + 1.0  # a refusal needs no silence window
    assert feed.watched() == [worker.endpoint]  # lost workers are still polled


def test_a_plain_rpc_server_has_no_status_and_then_is_gone(feed, tmp_path):
    plain = PlainRpcServer(free_port_pair(), tmp_path)
    try:
        heard = Heard(feed)
        feed.watch(plain.endpoint)
        _, r = heard.wait_state("no_status", 10)
        assert r.status is None and r.problem == ""
        time.sleep(SILENCE_S + INTERVAL_S)  # never called silent: it has nothing to say
        assert feed.reading(plain.endpoint).state == "no_status"
        killed_at = time.monotonic()
        plain.kill()
        heard.wait_state("gone", 5, after=killed_at)
    finally:
        plain.stop()


def test_a_reader_that_raises_counts_as_no_answer(worker):
    answers = iter([True])

    def read(address: str, timeout: float) -> WorkerStatus | None:
        from layerlab.core.cluster.status import read_plain_status

        if next(answers, False):
            return read_plain_status(address, timeout)
        raise RuntimeError("the reader broke")

    feed = WorkerFeed(read, interval_s=0.1, silence_s=0.5, timeout_s=0.5)
    try:
        heard = Heard(feed)
        feed.watch(worker.endpoint)
        heard.wait_state("ok", 10)
        heard.wait_state("silent", 3)
    finally:
        feed.close()


def test_subscribers_hear_each_new_document_until_they_unsubscribe(feed, worker):
    heard = Heard(feed)
    feed.watch(worker.endpoint)
    heard.wait_state("ok", 15)
    deadline = time.monotonic() + 10
    while sum(r.state == "ok" for _, r in heard.readings) < 3:
        assert time.monotonic() < deadline, "new documents were not told"
        time.sleep(0.05)
    times = [r.status.time for _, r in heard.readings if r.status is not None]
    assert times == sorted(times) and len(set(times)) == len(times)
    heard.unsubscribe()
    n = len(heard.readings)
    time.sleep(3 * INTERVAL_S)
    assert len(heard.readings) == n
    feed.unwatch(worker.endpoint)
    assert feed.watched() == [] and feed.reading(worker.endpoint) is None
