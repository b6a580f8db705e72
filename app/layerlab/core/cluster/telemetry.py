"""Workers' devices: the worker reports its telemetry, the head reads it from the feed.

Worker side: `LocalTelemetry` runs the same probe chain as the head and adds a
"telemetry" list to the worker's status document (status.py's `TelemetryEntry`: one
DeviceInfo and one DeviceSample per device). Its devices are matched to what the worker
serves over RPC, so the head can name them as its engine does ("RPC host:port", " #1" for
a worker's second device).

Head side: `WorkerTelemetryProbe` is one more probe in the devices sampler. It asks the
worker nothing itself: it reads the document the WorkerFeed (worker_feed.py) last got, so
one poller per worker feeds both the watchdog and the gauges, over the link for a paired
worker. A worker that does not answer makes its devices stale, nothing else.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from layerlab.core.cluster.status import TelemetryEntry, WorkerStatus
from layerlab.core.cluster.worker_feed import WorkerFeed
from layerlab.core.devices.ggml_view import LlamaView
from layerlab.core.devices.inventory import Inventory, discover, local_probes
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.probe_chain import ProbeUnavailable, stale
from layerlab.core.devices.sampler import Sampler
from layerlab.core.endpoint import Endpoint
from layerlab.core.load_plan import rpc_label


class LocalTelemetry:
    """The worker's own devices, for its status document. Thread-safe (threaded server)."""

    def __init__(self, sysfs_root: str = "/sys", timeout: float = 0.5):
        self._lock = threading.Lock()
        self._sysfs_root = sysfs_root
        self._timeout = timeout
        self._inv: Inventory | None = None
        self._sampler: Sampler | None = None

    def read(self, served: list[dict]) -> list[dict]:
        """served: the status document's "devices" (index, name, type, device_id, ...)."""
        with self._lock:
            if self._inv is None:
                self._inv = discover(local_probes(self._sysfs_root), LlamaView(list(served)))
                self._sampler = Sampler(self._inv.groups, self._timeout)
            assert self._sampler is not None
            samples = self._sampler.round()
        out = []
        for info in self._inv.machine.devices:
            s = samples.get(info.key) or stale(info.key, "no reading", time.time())
            out.append({"info": info.to_dict(), "sample": s.to_dict()})
        return out


class WorkerTelemetryProbe:
    """One worker's devices for the gauges (head side), read from its status document as
    the WorkerFeed last received it: the feed's poller is the only one asking the worker.

    Without a `feed` the probe watches the worker through a plain-HTTP feed of its own
    (closed with the probe): for `layerlab devices --worker` and the Devices panel until it
    shares the head's feed.
    """

    def __init__(self, address: str, feed: WorkerFeed | None = None, timeout: float = 1.0):
        self.address = address  # as the feed knows it: the address the person knows
        self.endpoint = str(Endpoint.parse(address))
        self.name = f"worker {self.endpoint}"
        self.timeout = timeout
        self._own_feed = feed is None
        self.feed = feed if feed is not None else WorkerFeed(timeout_s=timeout)
        if self._own_feed:
            self.feed.watch(address)
        self._keys: list[str] = []

    def _status(self, wait: float = 0.0) -> WorkerStatus:
        """The last good document, waiting up to `wait` s for the feed's first answer."""
        deadline = time.monotonic() + wait
        reading = self.feed.reading(self.address)
        while (reading is None or reading.state == "asking") and time.monotonic() < deadline:
            time.sleep(0.02)
            reading = self.feed.reading(self.address)
        if reading is None:
            raise ConnectionError(f"worker {self.endpoint} is not watched")
        if reading.state in ("silent", "gone"):
            raise ConnectionError(reading.problem or f"worker {self.endpoint} does not answer")
        if reading.status is None:
            raise ConnectionError(f"worker {self.endpoint} does not answer")
        return reading.status

    def _key(self, key: str) -> str:
        return f"rpc:{self.endpoint}#{key}"

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        try:
            doc = self._status(wait=self.timeout)
        except ConnectionError as e:
            raise ProbeUnavailable(str(e)) from None
        served = {d.name: d.index for d in doc.devices}
        infos = []
        for entry in doc.telemetry or self._from_devices(doc):
            info = entry.info
            index = served.get(info.llama_name or "")
            infos.append(
                replace(
                    info,
                    key=self._key(info.key),
                    machine=self.endpoint,
                    llama_name=rpc_label(self.endpoint, index) if index is not None else None,
                    llama_description=(
                        f"{info.llama_name} on {self.endpoint}"
                        if index is not None
                        else info.llama_description
                    ),
                )
            )
        self._keys = [i.key for i in infos]
        return infos

    def sample(self) -> list[DeviceSample]:
        doc = self._status()
        return [
            replace(e.sample, key=self._key(e.sample.key))
            for e in doc.telemetry or self._from_devices(doc)
        ]

    @staticmethod
    def _from_devices(doc: WorkerStatus) -> list[TelemetryEntry]:
        """A worker without telemetry (older LayerLab): llama.cpp's memory numbers only."""
        out = []
        for d in doc.devices:
            key = f"ggml:{d.name}"
            info = DeviceInfo(
                key=key,
                vendor="cpu" if d.type == "cpu" else "other",
                name=d.description or d.name,
                kind="cpu" if d.type == "cpu" else "gpu",
                memory_total=d.total,
                llama_name=d.name,
                partial=True,
            )
            s = DeviceSample(
                key=key,
                memory_used=d.total - d.free,
                memory_free=d.free,
                memory_total=d.total,
                time=doc.time,
            )
            out.append(TelemetryEntry(info=info, sample=s))
        return out

    def close(self) -> None:
        if self._own_feed:
            self.feed.close()
