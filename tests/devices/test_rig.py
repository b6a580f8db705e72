"""The recorded-rig format: load_rig() for the planner, record/save/load round trip."""

from __future__ import annotations

import json

import pytest

from layerlab.core.devices.rig import (
    RigFormatError,
    load_rig,
    read_rig,
    record_rig,
    rig_inventory,
    save_rig,
)
from tests.devices.conftest import ALL_RIGS, RIGS


def test_at_least_six_rigs():
    assert len(ALL_RIGS) >= 6


# What each recording holds: its discrete GPUs, and the devices read only in part (no
# driver that gives live numbers). A new rig says what it holds here, so the checks below
# cannot pass by finding nothing to check.
RIG_SHAPES = {
    "1080ti.json": (1, []),
    "2x3060.json": (2, []),
    "3090-p40.json": (2, []),
    "4090-7900xtx.json": (2, []),
    "laptop-irisxe-3060m.json": (1, ["Intel Iris Xe Graphics"]),
    "no-gpu-server.json": (0, []),
}


def test_every_rig_says_what_it_holds():
    assert sorted(RIG_SHAPES) == ALL_RIGS


@pytest.mark.parametrize("name", ALL_RIGS)
def test_every_rig_loads_as_a_plausible_machine(name):
    m = load_rig(RIGS / name)
    assert m.name == read_rig(RIGS / name)["name"]
    keys = [d.key for d in m.devices]
    assert len(keys) == len(set(keys)) and set(m.samples) == set(keys)
    assert m.devices[-1].kind == "cpu" and m.devices[-1].llama_name == "CPU"
    n_gpus, partial = RIG_SHAPES[name]
    assert [d.name for d in m.devices if d.partial] == partial
    for d in m.devices:
        assert isinstance(d.memory_total, int) and isinstance(m.samples[d.key].memory_used, int)
    complete = [d for d in m.devices if not d.partial]
    for d in complete:
        s = m.samples[d.key]
        assert d.memory_total > 0 and 0 <= s.memory_used <= s.memory_total, d.name
    gpus = [d for d in complete if d.kind == "gpu"]
    assert len(gpus) == n_gpus
    for d in gpus:
        assert d.llama_name and d.pci_bus_id and d.pcie_gen and d.pcie_width, d.name


def test_3090_p40_for_the_planner():
    m = load_rig(RIGS / "3090-p40.json")
    gpus = {d.llama_name: d for d in m.devices if d.kind == "gpu"}
    assert gpus["CUDA0"].name == "NVIDIA GeForce RTX 3090"
    assert gpus["CUDA1"].name == "Tesla P40"
    assert gpus["CUDA1"].memory_bandwidth < gpus["CUDA0"].memory_bandwidth / 2
    assert m.samples[gpus["CUDA1"].key].memory_free == 24451 * 1024**2 - 277 * 1024**2


def test_cpu_only_rig_says_so_in_one_line():
    inv = rig_inventory(read_rig(RIGS / "no-gpu-server.json"))
    assert inv.gpus == []
    line = inv.cpu_only_line
    assert "\n" not in line and "no NVIDIA driver" in line and "CPU only" in line
    assert rig_inventory(read_rig(RIGS / "1080ti.json")).cpu_only_line is None


def test_this_machine_round_trips(tmp_path):
    path = tmp_path / "here.json"
    save_rig(record_rig("here", with_llama=False), path)
    m = load_rig(path)
    assert m.name == "here"
    host = next(d for d in m.devices if d.kind == "cpu")
    assert host.memory_total > 0 and m.samples[host.key].memory_free > 0
    assert [p.name for p in tmp_path.iterdir()] == ["here.json"]  # no temp file left


def test_not_a_rig(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(RigFormatError, match="not a LayerLab rig"):
        load_rig(bad)
    bad.write_text("{")
    with pytest.raises(RigFormatError, match="cannot read"):
        load_rig(bad)
