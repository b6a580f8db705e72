"""The worker's status document: one schema, read the same way plain and over the link."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.cluster.status import WorkerStatus, parse_status, read_plain_status
from layerlab.core.cluster.worker_check import fetch_status, probe
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.endpoint import Endpoint
from tests.conftest import free_port_pair


def test_a_real_worker_document_is_read_and_a_newer_ones_extras_are_kept(worker):
    doc = read_plain_status(worker.endpoint, 2.0)
    assert isinstance(doc, WorkerStatus)
    assert doc.rpc_port == worker.port and doc.serving is None
    assert doc.devices[0].name == "CPU" and doc.devices[0].total > 0
    assert doc.host_memory is not None and doc.host_memory.total > 0
    (cpu,) = [e for e in doc.telemetry if e.info.kind == "cpu"]
    assert isinstance(cpu.info, DeviceInfo) and isinstance(cpu.sample, DeviceSample)
    assert cpu.info.llama_name == "CPU"

    raw = json.loads(doc.to_json())
    raw["gpu_clocks"] = {"CUDA0": 1800}  # a newer worker's field
    raw["devices"][0]["numa_node"] = 1
    raw["telemetry"][0]["info"]["fan_rpm"] = 900
    newer = parse_status(raw)
    assert newer is not None and newer.rpc_port == worker.port
    assert newer.model_extra == {"gpu_clocks": {"CUDA0": 1800}}
    assert newer.telemetry[0].info.key == doc.telemetry[0].info.key


def test_one_unreadable_telemetry_entry_drops_alone(worker):
    raw = json.loads(read_plain_status(worker.endpoint, 2.0).to_json())
    raw["telemetry"].append({"info": {"key": "x"}, "sample": "not a sample"})
    doc = parse_status(raw)
    assert doc is not None and len(doc.telemetry) == len(raw["telemetry"]) - 1


@pytest.mark.parametrize(
    "body",
    [b"{}", b"[1, 2]", b"not json", b'{"layerlab": "1", "rpc_port": "fifty", "devices": []}'],
)
def test_a_malformed_document_is_not_a_worker(body):
    assert parse_status(body) is None
    port = free_port_pair()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port + 1), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert read_plain_status(f"127.0.0.1:{port}", 1.0) is None
        assert fetch_status(Endpoint("127.0.0.1", port), 1.0) is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_probe_carries_the_document(worker):
    result = probe(worker.endpoint)
    assert result.ok and isinstance(result.status, WorkerStatus)
    assert result.devices[0].name == "CPU"


def test_head_links_read_a_paired_worker_over_the_link_and_a_plain_one_over_http(
    tmp_path, start_sharing, worker
):
    links = HeadLinks(tmp_path / "head", name="desk")
    try:
        w = start_sharing("bench-box")
        links.pair(w.address, w.code, w.fingerprint)
        paired = links.read_status(w.address, 2.0)
        assert isinstance(paired, WorkerStatus)
        assert paired.link is not None and paired.link_rtt_ms is not None  # over the link
        assert links.read_status("bench-box", 2.0) is not None  # by its name, too
        plain = links.read_status(worker.endpoint, 2.0)
        assert plain is not None and plain.rpc_port == worker.port and plain.link is None
        w.kill()
        assert links.read_status(w.address, 1.0) is None
    finally:
        links.close_all()
