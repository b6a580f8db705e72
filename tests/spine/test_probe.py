"""Every bad worker address gets its own clear words within 5 s, and no engine starts on it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from layerlab.core.cluster.worker_check import probe
from layerlab.core.engine.supervisor import EngineSupervisor, Failed
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.conftest import free_port_pair
from tests.spine.engine_helpers import load


def timed(endpoint, **kw):
    t = time.monotonic()
    r = probe(endpoint, **kw)
    return r, time.monotonic() - t


def test_a_live_worker_answers_with_its_devices(worker):
    r, _took = timed(worker.endpoint)
    assert r.ok and r.version and str(r.version) == "7.0.0"
    assert len(r.devices) == 1 and r.devices[0].total > 0
    assert r.status and r.status.rpc_port == worker.port
    assert "ready" in r.summary


def test_refused_port():
    r, took = timed(f"127.0.0.1:{free_port_pair()}")
    assert not r.ok and r.kind == "refused" and "Nothing is listening" in r.problem
    assert took < 5


class _Http(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_a_port_with_another_tcp_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r, took = timed(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert not r.ok and r.kind == "not_a_worker" and "not a llama.cpp RPC worker" in r.problem
    assert took < 5


def test_a_silent_service_times_out_in_words():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        r, took = timed(f"127.0.0.1:{srv.getsockname()[1]}", timeout=1.0)
    finally:
        srv.close()
    assert not r.ok and r.kind == "frozen" and "did not answer" in r.problem
    assert took < 5


def test_a_worker_serving_another_head_is_busy_and_names_it(demo_model, start_worker):
    w = start_worker()
    sup, _ = load(LoadPlan(str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(w.endpoint)]))
    try:
        r, took = timed(w.endpoint)
        assert not r.ok and r.kind == "busy" and "busy serving 127.0.0.1:" in r.problem
        assert took < 5
        # a second head is refused before any engine process starts
        second = EngineSupervisor()
        second.start(LoadPlan(str(demo_model), devices=[DeviceRef.rpc(w.endpoint)]))
        state = second.wait_for((Failed,), 10)
        assert "busy" in state.message and state.lost_workers == [w.endpoint]
        assert _engine_children() == 1  # only the first head's engine
    finally:
        sup.stop()


def test_a_typo_or_dead_address_never_reaches_llamacpp(demo_model):
    sup = EngineSupervisor()
    r = probe("127.0.0.1:50O52")
    assert not r.ok and r.kind == "bad_address" and "not a number" in r.problem
    with pytest.raises(ValueError, match="not a number"):
        sup.start(LoadPlan(str(demo_model), devices=[DeviceRef.rpc("127.0.0.1:50O52")]))
    sup.start(LoadPlan(str(demo_model), devices=[DeviceRef.rpc(f"127.0.0.1:{free_port_pair()}")]))
    state = sup.wait_for((Failed,), 10)
    assert "Nothing is listening" in state.message
    assert _engine_children() == 0


def _engine_children() -> int:
    return sum(
        "layerlab.core.engine.host" in " ".join(p.cmdline())
        for p in psutil.Process().children(recursive=True)
    )


def _netns_allowed() -> bool:
    if not shutil.which("ip"):
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


needs_netns = pytest.mark.skipif(
    not _netns_allowed(), reason="needs iproute2 and permission for network namespaces"
)


@needs_netns
@pytest.mark.parametrize(
    "setup, words",
    [
        # a namespace with no route at all: the network is unreachable
        ([], "cannot be reached"),
        # an on-link address nobody answers for (a machine that is switched off)
        (
            [
                ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                ["addr", "add", "10.231.77.2/24", "dev", "v0"],
                ["link", "set", "v0", "up"],
                ["link", "set", "v1", "up"],
            ],
            "cannot be reached",
        ),
    ],
)
def test_unreachable_addresses_fail_in_bounded_time(setup, words):
    ns = f"ll-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in setup:
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        code = (
            "import time, json; from layerlab.core.cluster.worker_check import probe\n"
            "t = time.monotonic(); r = probe('10.231.77.1:50052', timeout=2.0)\n"
            "print(json.dumps([r.ok, r.kind, r.problem, time.monotonic() - t]))"
        )
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        import json

        ok, kind, problem, took = json.loads(out)
        assert not ok and kind == "unreachable" and words in problem
        assert took < 5
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
