"""Workers' devices: the worker reports its telemetry, the head polls it.

Worker side: `LocalTelemetry` runs the same probe chain as the head and adds a
"telemetry" list to the worker's status document: one {"info": DeviceInfo, "sample":
DeviceSample} per device, as plain dicts. Its devices are matched to what the worker
serves over RPC, so the head can name them as its engine does ("RPC host:port", " #1" for
a worker's second device).

Head side: `WorkerTelemetryProbe` is one more probe in the sampler; a worker that does
not answer makes its devices stale, nothing else.
"""

from __future__ import annotations

import threading
import time
from dataclasses import fields, replace

from layerlab.core.cluster.probe import fetch_status
from layerlab.core.devices.ggml_view import LlamaView
from layerlab.core.devices.inventory import Inventory, discover, local_probes
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.probe import ProbeUnavailable, stale
from layerlab.core.devices.sampler import Sampler
from layerlab.core.endpoint import Endpoint

_INFO_FIELDS = {f.name for f in fields(DeviceInfo)}
_SAMPLE_FIELDS = {f.name for f in fields(DeviceSample)}


def info_from_dict(d: dict) -> DeviceInfo:
    return DeviceInfo(**{k: v for k, v in d.items() if k in _INFO_FIELDS})  # newer fields ignored


def sample_from_dict(d: dict) -> DeviceSample:
    return DeviceSample(**{k: v for k, v in d.items() if k in _SAMPLE_FIELDS})


def rpc_label(endpoint: str, index: int) -> str:
    """The engine's name for a worker's device (core.load_plan.DeviceRef.label)."""
    return f"RPC {endpoint}" + (f" #{index}" if index else "")


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
    """One worker's devices, read from its status endpoint (head side)."""

    def __init__(self, endpoint: str, timeout: float = 1.0):
        self.endpoint = str(Endpoint.parse(endpoint))
        self.name = f"worker {self.endpoint}"
        self.timeout = timeout
        self._keys: list[str] = []

    def _fetch(self) -> dict:
        doc = fetch_status(Endpoint.parse(self.endpoint), timeout=self.timeout)
        if doc is None:
            raise ConnectionError(f"worker {self.endpoint} does not answer")
        return doc

    def _key(self, key: str) -> str:
        return f"rpc:{self.endpoint}#{key}"

    def discover(self, claimed: set[str]) -> list[DeviceInfo]:
        try:
            doc = self._fetch()
        except ConnectionError as e:
            raise ProbeUnavailable(str(e)) from None
        served = {d["name"]: d["index"] for d in doc.get("devices", [])}
        infos = []
        for entry in doc.get("telemetry") or self._from_devices(doc):
            info = info_from_dict(entry["info"])
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
        doc = self._fetch()
        entries = doc.get("telemetry") or self._from_devices(doc)
        return [
            replace(sample_from_dict(e["sample"]), key=self._key(e["sample"]["key"]))
            for e in entries
        ]

    @staticmethod
    def _from_devices(doc: dict) -> list[dict]:
        """A worker without telemetry (older LayerLab): llama.cpp's memory numbers only."""
        out, now = [], time.time()
        for d in doc.get("devices", []):
            key = f"ggml:{d['name']}"
            info = DeviceInfo(
                key=key,
                vendor="cpu" if d["type"] == "cpu" else "other",
                name=d.get("description") or d["name"],
                kind="cpu" if d["type"] == "cpu" else "gpu",
                memory_total=int(d["total"]),
                llama_name=d["name"],
                partial=True,
            )
            s = DeviceSample(
                key=key,
                memory_used=int(d["total"]) - int(d["free"]),
                memory_free=int(d["free"]),
                memory_total=int(d["total"]),
                time=now,
            )
            out.append({"info": info.to_dict(), "sample": s.to_dict()})
        return out

    def close(self) -> None:
        pass
