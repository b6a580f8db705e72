"""Three machines in network namespaces: a head and two sharing workers on one switch.

Discovery, pairing, a split load through the link with the same greedy text as a local
load, and faults (kill -9, SIGSTOP, a pulled cable) reported by the head in time, after
which the worker serves the next session.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from layerlab.core.cluster.link import DEFAULT_LINK_PORT
from layerlab.core.load_plan import DeviceRef, LoadPlan, expected_layer_devices
from tests.cluster.conftest import REPO, HeadAgent, SharingWorker

pytestmark = pytest.mark.slow
N_LAYER = 30


@pytest.fixture(scope="module")
def site(lan, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    for host in ("head", "w1", "w2"):
        lan.add_host(host)
    workers = {
        name: SharingWorker(
            tmp,
            name,
            f"{lan.hosts[name]}:{DEFAULT_LINK_PORT}",
            rpc_port=50052,
            netns=lan.ns(name),
            announce=True,
        )
        for name in ("w1", "w2")
    }
    head = HeadAgent(lan.ns("head"), tmp / "head-state", "desk")
    try:
        yield lan, workers, head, tmp
    finally:
        head.close()
        for w in workers.values():
            w.stop()


def listeners(netns: str) -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-Hltn"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_only_the_link_listens_on_the_lan(site):
    lan, _workers, _, _ = site
    got = listeners(lan.ns("w1"))
    lan_side = {a for a in got if not a.startswith("127.")}
    assert lan_side == {f"{lan.hosts['w1']}:{DEFAULT_LINK_PORT}"}, got
    assert {"127.0.0.1:50052", "127.0.0.1:50053"} <= got  # llama.cpp RPC and status
    # Without --share a worker listens on loopback only.
    plain = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lan.ns("head"),
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "worker",
            "--listen",
            "127.0.0.1:50062",
            "--threads",
            "1",
            "--cache-dir",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 20
        while "127.0.0.1:50062" not in (got := listeners(lan.ns("head"))):
            assert time.monotonic() < deadline and plain.poll() is None
            time.sleep(0.1)
        time.sleep(0.3)
        assert all(a.startswith("127.") for a in listeners(lan.ns("head")))
    finally:
        plain.terminate()
        plain.wait(10)


def test_discovery_and_pairing_across_hosts(site):
    lan, workers, head, _ = site
    found = head("browse", seconds=8, want=2)["workers"]
    by_name = {w["name"]: w for w in found}
    assert set(by_name) == {"w1", "w2"}, found
    for name, w in workers.items():
        assert by_name[name]["address"] == f"{lan.hosts[name]}:{DEFAULT_LINK_PORT}"
        assert by_name[name]["fp"] == w.fingerprint
        assert by_name[name]["link"] == 1 and by_name[name]["rpc"] == "7.0.0"
        paired = head("pair", address=by_name[name]["address"], code=w.code, fp=by_name[name]["fp"])
        assert paired == {"ok": True, "name": name, "fingerprint": w.fingerprint}


def test_a_paired_workers_gauges_are_live_over_the_link(site):
    """WorkerFeed(read=links.read_status) + the telemetry probe: live numbers for a
    sharing worker, although nothing of it listens on the LAN at the link's port + 1."""
    lan, _workers, head, _ = site
    address = f"{lan.hosts['w1']}:{DEFAULT_LINK_PORT}"
    got = head("gauges", address=address)
    assert got["state"] == "ok", got
    (cpu,) = [d for d in got["devices"] if d["kind"] == "cpu"]
    first, later = got["first"][cpu["key"]], got["later"][cpu["key"]]
    assert not first["stale"] and not later["stale"], got
    assert 0 < later["memory_free"] <= later["memory_total"]
    assert later["time"] > first["time"]  # a newer sample, not the first one again
    assert cpu["llama_name"] == f"RPC {address}"  # the engine's label for it
    # The plain road is closed: nothing answers status at port + 1 on the LAN...
    assert head("plain_status", address=address) == {"answered": False}
    assert f"{lan.hosts['w1']}:{DEFAULT_LINK_PORT + 1}" not in listeners(lan.ns("w1"))
    assert not any(
        a.endswith(f":{DEFAULT_LINK_PORT + 1}") and not a.startswith("127.")
        for a in listeners(lan.ns("w1"))
    )


def _endpoints(site) -> dict[str, str]:
    """Each paired worker's address as the person knows it (the head routes it)."""
    _, workers, head, _ = site
    return {n: head("forward", fingerprint=w.fingerprint)["address"] for n, w in workers.items()}


def test_split_load_through_the_link_is_identical_to_local(site, demo_model):
    _, _, head, _ = site
    eps = _endpoints(site)
    assert head("load", endpoints=[], split=[])["ok"]
    local = head("answer", max_tokens=32)
    assert "error" not in local and local["n"] > 5
    loaded = head("load", endpoints=[eps["w1"], eps["w2"]], split=[10, 21])
    assert loaded["ok"], loaded
    plan = LoadPlan(
        str(demo_model),
        devices=[DeviceRef.rpc(eps["w1"]), DeviceRef.rpc(eps["w2"])],
        tensor_split=[10, 21],
    )
    assert loaded["layers"] == expected_layer_devices(plan, N_LAYER)
    split = head("answer", max_tokens=32)
    head("stop_engine")
    assert split["text"] == local["text"]


def _in_ns(netns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, cwd=REPO, **kw
    )


ASK = """
import httpx, sys, time
base, key = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 120
while True:
    try:
        if httpx.get(base + "/health").status_code == 200:
            break
    except httpx.HTTPError:
        pass
    assert time.monotonic() < deadline, "serve never became healthy"
    time.sleep(0.2)
r = httpx.post(base + "/v1/chat/completions", timeout=120,
               headers={"Authorization": "Bearer " + key},
               json={"messages": [{"role": "user", "content": "Write a short poem about the sea."}],
                     "max_tokens": 32, "temperature": 0, "seed": 42})
print(httpx.get(base + "/health").json()["placement"])
print(r.json()["choices"][0]["message"]["content"], end="")
"""


def _serve_answer(netns: str | None, state_dir, workers: str) -> tuple[str, str]:
    """`layerlab serve` on the host `netns` (None: here), asked one greedy question."""
    port = 18080
    cmd = [
        sys.executable,
        "-m",
        "layerlab.cli.main",
        "serve",
        "--port",
        str(port),
        "--ctx",
        "1024",
        "--api-key",
        "k",
        "--state-dir",
        str(state_dir),
        "--no-auto-reload",
    ]
    if workers:
        cmd += ["--workers", workers]
    prefix = ["ip", "netns", "exec", netns] if netns else []
    serve = subprocess.Popen(
        [*prefix, *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    try:
        asked = subprocess.run(
            [*prefix, sys.executable, "-c", ASK, f"http://127.0.0.1:{port}", "k"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=200,
        )
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=20)
    assert asked.returncode == 0, (asked.stderr, out)
    placement, text = asked.stdout.split("\n", 1)
    return placement, text


def test_serve_pairs_by_cli_and_answers_over_the_link_like_local(site, tmp_path):
    """A second head (its own key) pairs with `layerlab pair`, then serves over w1 by name."""
    lan, workers, head, _ = site
    head("stop_engine")
    w1 = workers["w1"]
    state = tmp_path / "rack-head"
    paired = _in_ns(
        lan.ns("head"),
        sys.executable,
        "-m",
        "layerlab.cli.main",
        "pair",
        w1.address,
        w1.code,
        "--state-dir",
        str(state),
        "--name",
        "rack",
    )
    assert paired.returncode == 0, paired.stderr
    assert paired.stdout.startswith(f"Paired with w1 at {w1.address}")
    listed = _in_ns(
        lan.ns("head"),
        sys.executable,
        "-m",
        "layerlab.cli.main",
        "pair",
        "--list",
        "--state-dir",
        str(state),
    )
    assert listed.stdout.split("\t")[:2] == ["w1", w1.address]

    local_placement, local = _serve_answer(None, tmp_path / "local-head", "")
    placement, linked = _serve_answer(lan.ns("head"), state, "w1")
    assert local_placement == "CPU: layers 0-29 + output"
    assert placement == f"RPC {w1.address}: layers 0-29 + output"
    assert linked == local and len(local) > 20


def _fault(
    site,
    victim: str,
    do,
    undo,
    report_within: float,
    watch_kind: str,
    engine_within: float | None = None,
):
    """`report_within`: our heartbeat watch; `engine_within`: the supervisor's Failed state."""
    engine_within = engine_within or report_within
    _lan, workers, head, _ = site
    eps = _endpoints(site)
    loaded = head("load", endpoints=[eps["w1"], eps["w2"]], split=[10, 21])
    assert loaded["ok"], loaded
    head("answer_start", max_tokens=2000)
    t0 = head("report")["now"]
    do()
    failed = lost = None
    deadline = time.monotonic() + max(report_within, engine_within) + 5
    while time.monotonic() < deadline and (failed is None or lost is None):
        rep = head("report")
        failed = next(
            (s["t"] for s in rep["states"] if s["type"] == "Failed" and s["t"] > t0), None
        )
        lost = next(
            (
                e["t"]
                for e in rep["watch"]
                if e["t"] > t0 and e["state"] == "lost" and e["fp"] == workers[victim].fingerprint
            ),
            None,
        )
        time.sleep(0.1)
    msg = [s for s in rep["states"] if s["type"] == "Failed"]
    print(
        f"\n{victim} {watch_kind}: engine failed after {failed and failed - t0:.2f} s, "
        f"watch reported after {lost and lost - t0:.2f} s: {msg and msg[-1]['message']}"
    )
    undo()
    head("stop_engine")
    assert failed is not None and failed - t0 < engine_within, (rep["states"], t0)
    assert lost is not None and lost - t0 < report_within, rep["watch"]
    assert (
        next(e["kind"] for e in rep["watch"] if e["t"] > t0 and e["state"] == "lost") == watch_kind
    )
    assert victim in msg[-1]["message"] or eps[victim] in msg[-1]["message"], msg
    # The worker is ready for the next session.
    deadline = time.monotonic() + 25
    while not (r := head("probe", endpoint=eps[victim]))["ok"]:
        assert time.monotonic() < deadline, r
        time.sleep(0.5)


def test_worker_killed_mid_generation_is_reported_within_2s(site):
    lan, workers, _head, tmp = site
    w1 = workers["w1"]

    def restart() -> None:
        workers["w1"] = SharingWorker(
            tmp, "w1", w1.share_on, rpc_port=50052, netns=lan.ns("w1"), state_dir=w1.state_dir
        )

    try:
        # The heartbeat reports in ~10 ms and tells the supervisor (worker_lost), which
        # stops the engine at once instead of diagnosing llama.cpp's abort.
        _fault(site, "w1", w1.kill, restart, 2.0, "stopped")
    finally:
        w1.stop()


def test_frozen_worker_is_reported_within_10s(site):
    w2 = site[1]["w2"]
    _fault(site, "w2", w2.freeze, w2.thaw, 10.0, "silent")


def test_pulled_cable_is_reported_within_10s(site):
    lan = site[0]
    _fault(
        site, "w2", lambda: lan.cable("w2", False), lambda: lan.cable("w2", True), 10.0, "silent"
    )
