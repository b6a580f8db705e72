"""Strategies on recorded rigs and header-only big models; the CLI; worker advice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from layerlab.core.cluster.worker_check import probe
from layerlab.core.devices.rig import load_rig
from layerlab.core.gguf import read_facts
from layerlab.core.load_plan import expected_layer_devices
from layerlab.core.planner.devices import devices_from_machine, devices_from_probe, host_device
from layerlab.core.planner.planner import Planner, PlanOptions
from layerlab.core.units import GiB
from tests.support.synthetic_gguf import LLAMA_70B, MIXTRAL_8X7B, write_model

RIGS = sorted(Path(__file__).parents[1].joinpath("fixtures", "rigs").glob("*.json"))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    return {
        "70b": read_facts(write_model(d / "70b.gguf", LLAMA_70B, sparse=True)),
        "8x7b": read_facts(write_model(d / "8x7b.gguf", MIXTRAL_8X7B, sparse=True)),
    }


def _check_invariants(result, devices):
    by_label = {d.label: d for d in devices}
    host, *gpu_rows = result.devices
    assert host.device.is_host
    # fitting keeps every GPU within what it has to give; only the host can run short
    for row in gpu_rows:
        assert row.memory.total <= by_label[row.device.label].capacity, row.device.label
    assert (host.memory.total <= host.device.capacity) == (result.verdict != "does not fit")
    # the map agrees with llama.cpp's own layer rule for the LoadPlan it produced
    placement = expected_layer_devices(result.plan, result.facts.n_layer)
    for row in result.devices:
        for il in range(row.first, row.last):
            assert placement[il] == row.device.label
    (out,) = [r for r in result.devices if r.has_output]
    assert placement[-1] == out.device.label
    # workers first, local GPUs last: the output stays local when a local GPU takes part
    kinds = [d.kind for d in result.plan.devices]
    assert kinds == sorted(kinds, key=lambda k: k == "local")


@pytest.mark.parametrize("rig", RIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("model", ["70b", "8x7b"])
@pytest.mark.parametrize("strategy", ["proportional", "fastest", "manual"])
def test_rigs_deterministic_within_memory(big, rig, model, strategy):
    devices = devices_from_machine(load_rig(rig))
    gpus = [d for d in devices if not d.is_host]
    opts = PlanOptions(
        strategy=strategy,
        n_ctx=8192,
        ratios={d.label: float(i + 1) for i, d in enumerate(gpus)},
        reserves={gpus[0].label: 2 * GiB} if gpus else {},
    )
    planner = Planner(big[model])
    a = planner.plan(devices, opts)
    b = Planner(big[model]).plan(devices, opts)
    assert a.to_dict() == b.to_dict()
    _check_invariants(a, devices)
    if not gpus:
        assert [r.device.label for r in a.devices] == ["CPU"] and not a.plan.devices
        return
    # the reserve is kept free on the first GPU, which every plan here uses
    row = a.device(gpus[0].label)
    assert row.device.free - row.memory.total >= 2 * GiB


@pytest.mark.parametrize("rig", ["3090-p40", "4090-7900xtx"])
@pytest.mark.parametrize("model", ["70b", "8x7b"])
def test_fastest_first_fills_the_fastest_gpu_first(big, rig, model):
    """Told apart by placement and memory, not by the speed model judging itself: the
    fastest GPU gets more layers than llama.cpp's proportional split gives it, and as many
    as it can hold (one more does not fit)."""
    devices = devices_from_machine(load_rig(RIGS[0].parent / f"{rig}.json"))
    gpus = [d for d in devices if not d.is_host]
    quick, slow = sorted(gpus, key=lambda d: -d.bandwidth)
    p = Planner(big[model])
    fast = p.plan(devices, PlanOptions(strategy="fastest", n_ctx=4096))
    prop = p.plan(devices, PlanOptions(strategy="proportional", n_ctx=4096))
    assert fast.device(quick.label).n_units > prop.device(quick.label).n_units
    n_quick, n_slow = fast.device(quick.label).n_units, fast.device(slow.label).n_units
    assert fast.devices[0].n_units == 0  # nothing left on the CPU
    one_more = p.plan(
        devices,
        PlanOptions(
            strategy="manual",
            n_ctx=4096,
            fit=False,
            ratios={quick.label: n_quick + 1, slow.label: n_slow - 1},
        ),
    )
    assert one_more.device(quick.label).n_units == n_quick + 1
    assert one_more.device(quick.label).verdict == "does not fit"


def test_manual_fit_moves_layers_then_says_so(big):
    devices = devices_from_machine(load_rig(RIGS[0].parent / "2x3060.json"))
    r = Planner(big["70b"]).plan(
        devices, PlanOptions(strategy="manual", n_ctx=4096, ratios={"CUDA0": 1, "CUDA1": 1})
    )
    assert r.verdict == "fits with CPU offload"
    assert r.devices[0].last > 0 and any("to the CPU" in c for c in r.changes)
    off = Planner(big["70b"]).plan(
        devices,
        PlanOptions(strategy="manual", n_ctx=4096, fit=False, ratios={"CUDA0": 1, "CUDA1": 1}),
    )
    assert off.verdict == "does not fit" and not off.changes


def test_context_shrinks_only_when_the_host_is_short(big):
    host = host_device(free=40 * GiB, total=64 * GiB)
    r = Planner(big["70b"]).plan([host], PlanOptions(n_ctx=131072))
    assert r.verdict == "fits" and r.plan.n_ctx < 131072
    assert any("context reduced" in c for c in r.changes)
    tiny = Planner(big["70b"]).plan([host_device(8 * GiB, 8 * GiB)], PlanOptions(n_ctx=4096))
    assert tiny.verdict == "does not fit" and tiny.plan.n_ctx == 4096
    assert any("even with" in n for n in tiny.notes)


def test_exclude_and_reserve_reach_the_plan(big):
    devices = devices_from_machine(load_rig(RIGS[0].parent / "3090-p40.json"))
    r = Planner(big["8x7b"]).plan(
        devices, PlanOptions(excluded={"CUDA1"}, reserves={"CUDA0": 4 * GiB})
    )
    assert [d.label for d in r.plan.devices] == ["CUDA0"]
    assert r.device("CUDA0").free_after >= 4 * GiB


def test_a_70b_on_five_devices_fits_with_the_output_local(big):
    # how long it takes is bench/plan_speed.py's to measure, not a test's
    devices = devices_from_machine(load_rig(RIGS[0].parent / "3090-p40.json"))
    devices += devices_from_machine(
        load_rig(RIGS[0].parent / "2x3060.json"), worker="10.0.0.2:50052", rtt_s=0.0005
    )
    devices = [d for d in devices if d.kind != "cpu" or d.is_host]
    assert len(devices) == 5
    p = Planner(big["70b"])
    r = p.plan(devices, PlanOptions(strategy="fastest", n_ctx=8192))
    assert r.verdict == "fits"
    assert [d.kind for d in r.plan.devices][-1] == "local"


def test_a_loopback_worker_is_said_to_cost_speed(demo_path, workers):
    devices = [host_device(free=16 * GiB, total=16 * GiB)]
    for ep in workers:
        devices += devices_from_probe(probe(ep))
    r = Planner(read_facts(demo_path), demo_path).plan(
        devices, PlanOptions(strategy="manual", ratios={d.label: 1 for d in devices[1:]})
    )
    assert r.verdict == "fits"
    assert any("makes generation slower" in n for n in r.notes), r.notes


def test_cli_json_on_a_rig(big, tmp_path):
    path = write_model(tmp_path / "70b.gguf", LLAMA_70B, sparse=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "plan",
            str(path),
            "--ctx",
            "8192",
            "--rig",
            str(RIGS[0].parent / "3090-p40.json"),
            "--strategy",
            "fastest",
            "--reserve",
            "CUDA0=1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "fits" and doc["n_ctx"] == 8192
    labels = [d["device"]["label"] for d in doc["devices"]]
    assert labels == ["CPU", "CUDA0", "CUDA1"]
    assert doc["load_plan"]["devices"][-1]["name"] == "CUDA1"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "layerlab.cli.main",
            "plan",
            str(path),
            "--rig",
            str(RIGS[0].parent / "3090-p40.json"),
            "--reserve",
            "CUDA7=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "CUDA7" in bad.stderr


@pytest.mark.parametrize(
    ("worker", "loopback"),
    [
        ("127.0.0.1:50052", True),
        ("127.1.2.3:50052", True),
        ("[::1]:50052", True),
        ("[0:0:0:0:0:0:0:1]:50052", True),  # ::1 written out in full
        ("localhost:50052", True),
        ("192.168.1.20:50052", False),
        ("bench-box:50052", False),
    ],
)
def test_a_worker_link_is_loopback_as_the_endpoint_says(worker, loopback):
    from layerlab.core.endpoint import Endpoint
    from layerlab.core.planner.devices import LAN_BANDWIDTH, LOOPBACK_BANDWIDTH

    devices = devices_from_machine(load_rig(RIGS[0].parent / "2x3060.json"), worker=worker)
    assert devices
    assert Endpoint.parse(worker).is_loopback == loopback
    expected = LOOPBACK_BANDWIDTH if loopback else LAN_BANDWIDTH
    assert {d.link_bandwidth for d in devices} == {expected}
