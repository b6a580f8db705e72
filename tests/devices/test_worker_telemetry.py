"""A real worker reports its devices; the head reads them; a vanished worker goes stale."""

from __future__ import annotations

from layerlab.core.cluster.probe import fetch_status
from layerlab.core.devices.host_probe import HostProbe
from layerlab.core.devices.inventory import discover
from layerlab.core.devices.remote import WorkerTelemetryProbe
from layerlab.core.devices.sampler import Sampler
from layerlab.core.endpoint import Endpoint


def test_worker_telemetry_and_a_vanished_worker(worker):
    doc = fetch_status(Endpoint.parse(worker.endpoint))
    (entry,) = [e for e in doc["telemetry"] if e["info"]["kind"] == "cpu"]
    assert entry["info"]["llama_name"] == "CPU"  # matched to what the worker serves
    assert entry["sample"]["memory_total"] == doc["host_memory"]["total"]
    assert doc["devices"][0]["name"] == "CPU"  # the existing document is unchanged

    remote = discover([WorkerTelemetryProbe(worker.endpoint)], machine_name=worker.endpoint)
    local = discover([HostProbe()])
    (dev,) = [d for d in remote.machine.devices if d.kind == "cpu"]
    assert dev.machine == worker.endpoint
    assert dev.llama_name == f"RPC {worker.endpoint}"  # the engine's label for it
    sampler = Sampler(local.groups + remote.groups, timeout=2.0)
    first = sampler.round()
    assert not first[dev.key].stale and first[dev.key].memory_total > 0

    worker.kill()
    after = sampler.round()
    assert after[dev.key].stale and "does not answer" in after[dev.key].problem
    assert after[dev.key].memory_total == first[dev.key].memory_total  # last good numbers
    assert not after["host"].stale
