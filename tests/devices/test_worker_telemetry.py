"""A real worker reports its devices; the head reads them from the feed; a vanished worker
goes stale."""

from __future__ import annotations

import time

from layerlab.core.cluster.telemetry import WorkerTelemetryProbe
from layerlab.core.cluster.worker_check import fetch_status
from layerlab.core.cluster.worker_feed import WorkerFeed
from layerlab.core.devices.host_probe import HostProbe
from layerlab.core.devices.inventory import discover
from layerlab.core.devices.sampler import Sampler
from layerlab.core.endpoint import Endpoint


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_worker_telemetry_and_a_vanished_worker(worker):
    doc = fetch_status(Endpoint.parse(worker.endpoint))
    (entry,) = [e for e in doc.telemetry if e.info.kind == "cpu"]
    assert entry.info.llama_name == "CPU"  # matched to what the worker serves
    assert entry.sample.memory_total == doc.host_memory.total
    assert doc.devices[0].name == "CPU"

    feed = WorkerFeed(interval_s=0.25)
    try:
        feed.watch(worker.endpoint)
        remote = discover(
            [WorkerTelemetryProbe(worker.endpoint, feed, timeout=10)], machine_name=worker.endpoint
        )
        local = discover([HostProbe()])
        (dev,) = [d for d in remote.machine.devices if d.kind == "cpu"]
        assert dev.machine == worker.endpoint
        assert dev.llama_name == f"RPC {worker.endpoint}"  # the engine's label for it
        sampler = Sampler(local.groups + remote.groups, timeout=2.0)
        first = sampler.round()
        assert not first[dev.key].stale and first[dev.key].memory_total > 0
        # The gauges move with the feed: a later round reads a newer document.
        _wait(lambda: sampler.round()[dev.key].time > first[dev.key].time, 10, "no newer sample")

        worker.kill()
        _wait(lambda: feed.reading(worker.endpoint).state == "gone", 5, "the feed never saw it go")
        after = sampler.round()
        assert after[dev.key].stale and "refuses connections" in after[dev.key].problem
        assert after[dev.key].memory_total == first[dev.key].memory_total  # last good numbers
        assert not after["host"].stale
    finally:
        feed.close()


def test_a_probe_without_a_feed_watches_the_worker_itself(worker):
    probe = WorkerTelemetryProbe(worker.endpoint, timeout=10)
    try:
        inv = discover([probe], machine_name=worker.endpoint)
        assert [d.llama_name for d in inv.machine.devices if d.kind == "cpu"] == [
            f"RPC {worker.endpoint}"
        ]
        assert probe.feed.watched() == [worker.endpoint]
    finally:
        probe.close()
    assert probe.feed.watched() == []
