"""A LayerLab worker's status document: one schema, built, served and read here.

The worker builds it (worker.py) and serves it two ways: plain HTTP at its RPC port + 1
(`GET /status`) and, when it shares on the LAN, over the TLS link's `status` session
(link_server.py). Heads read it three ways: `read_plain_status` here, the link's
`worker_status` (link_client.py), and `probe.fetch_status`. Every reader validates it with
`WorkerStatus`, so:

- a newer worker's extra fields are accepted (kept, not used);
- a malformed document is "not a worker" (`parse_status` answers None), never a traceback;
- a telemetry entry this head cannot read is dropped alone: the gauges show the rest.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.endpoint import BadAddress, Endpoint

MAX_DOCUMENT_BYTES = 1 << 20  # a worker with a few dozen devices answers in a few kB


class _Open(BaseModel):
    # A newer worker may add fields; an older head keeps them and reads what it knows.
    model_config = ConfigDict(extra="allow")


class ServedDevice(_Open):
    """One device the worker serves over llama.cpp's RPC, as llama.cpp sees it there."""

    index: int = Field(description="The device's index on the worker (RPC device order).")
    name: str = Field(description="llama.cpp's device name on the worker: 'CUDA0', 'CPU'.")
    description: str = Field("", description="llama.cpp's description: the card's name.")
    type: str = Field(description="llama.cpp's device type: 'gpu', 'igpu', 'cpu' or 'accel'.")
    free: int = Field(description="Free memory in bytes now (for a CPU: available RAM).")
    total: int = Field(description="Total memory in bytes (for a CPU: physical RAM).")
    device_id: str | None = Field(None, description="PCI bus id where llama.cpp knows it.")


class HostMemory(_Open):
    """The worker machine's RAM, in bytes."""

    total: int = Field(description="Physical RAM.")
    available: int = Field(description="RAM available to new allocations now.")


class TelemetryEntry(BaseModel):
    """One device's gauges on the worker: what it is and one reading of its live numbers."""

    info: DeviceInfo = Field(description="What does not change (core/devices/model.py).")
    sample: DeviceSample = Field(description="The live numbers, read for this document.")


class WorkerStatus(_Open):
    """What a LayerLab worker says about itself. A plain llama.cpp rpc-server has none."""

    layerlab: str = Field(description="The worker's LayerLab version.")
    rpc_protocol: str = Field(description="The ggml RPC protocol its llama.cpp speaks: '7.0.0'.")
    hostname: str = Field("", description="The worker machine's host name.")
    rpc_port: int = Field(description="The port of its llama.cpp RPC server.")
    serving: str | None = Field(
        None,
        description="Whom it serves now: a head's 'ip:port' on plain RPC, a paired head's "
        "name over the link; None while idle (it serves one head at a time).",
    )
    devices: list[ServedDevice] = Field(description="The devices it serves, in RPC order.")
    host_memory: HostMemory | None = Field(None, description="The machine's RAM.")
    telemetry: list[TelemetryEntry] = Field(
        default_factory=list,
        description="Gauges per device, matched to what it serves (core/cluster/telemetry.py); "
        "empty from an older worker.",
    )
    time: float = Field(0.0, description="time.time() on the worker when it was built.")
    link: dict[str, Any] | None = Field(
        None,
        description="A sharing worker's link counters (link_server.LinkCounters), else None.",
    )
    link_rtt_ms: float | None = Field(
        None, description="Set by the head: how long the status session over the link took."
    )

    @field_validator("telemetry", mode="before")
    @classmethod
    def _readable_entries(cls, value: object) -> object:
        """Keep the entries this head can read; one odd device must not hide the others."""
        if not isinstance(value, list):
            return []
        kept = []
        for entry in value:
            try:
                kept.append(TelemetryEntry.model_validate(entry))
            except ValidationError:
                continue
        return kept

    def device(self, index: int) -> ServedDevice | None:
        return next((d for d in self.devices if d.index == index), None)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def parse_status(doc: object) -> WorkerStatus | None:
    """A status document from its JSON value (or bytes), or None if it is not one."""
    try:
        if isinstance(doc, bytes | bytearray | str):
            return WorkerStatus.model_validate_json(doc)
        return WorkerStatus.model_validate(doc)
    except (ValidationError, ValueError, TypeError):
        return None


def status_url(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"http://{host}:{endpoint.status_port}/status"


def fetch_plain_status(endpoint: Endpoint, timeout: float) -> WorkerStatus | None:
    """GET /status at the RPC port + 1; None when nothing (or not a worker) answers."""
    # No proxy: a worker is on this machine or the LAN, never behind the person's proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(status_url(endpoint), timeout=timeout) as resp:
            if resp.status != 200:
                return None
            body = resp.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, ValueError, urllib.error.URLError, json.JSONDecodeError):
        return None
    if len(body) > MAX_DOCUMENT_BYTES:
        return None
    return parse_status(body)


def read_plain_status(address: str, timeout: float) -> WorkerStatus | None:
    """The status of the worker at `address` ('host:port' of its RPC), over plain HTTP."""
    try:
        endpoint = Endpoint.parse(address)
    except BadAddress:
        return None
    return fetch_plain_status(endpoint, timeout)
