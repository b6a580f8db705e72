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


@pytest.mark.parametrize("name", ALL_RIGS)
def test_every_rig_loads_as_a_plausible_machine(name):
    m = load_rig(RIGS / name)
    assert m.name == read_rig(RIGS / name)["name"]
    keys = [d.key for d in m.devices]
    assert len(keys) == len(set(keys)) and set(m.samples) == set(keys)
    assert m.devices[-1].kind == "cpu" and m.devices[-1].llama_name == "CPU"
    for d in m.devices:
        s = m.samples[d.key]
        assert isinstance(d.memory_total, int) and isinstance(s.memory_used, int)
        if not d.partial:
            assert d.memory_total > 0 and 0 <= s.memory_used <= s.memory_total
        if d.kind == "gpu" and not d.partial:
            assert d.llama_name and d.pci_bus_id and d.pcie_gen and d.pcie_width


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
