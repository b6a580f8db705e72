"""AMD and other GPUs read from a fake /sys laid out as real files in tmp_path."""

from __future__ import annotations

from layerlab.core.devices.amd_sysfs import AmdSysfsProbe, max_memory_clock
from layerlab.core.devices.inventory import discover
from layerlab.core.devices.other_sysfs import OtherSysfsProbe
from layerlab.core.devices.rig import RecordedNvmlProbe
from layerlab.core.devices.sysfs_tree import DirTree, write_tree
from tests.devices.conftest import rig

XTX = "class/drm/card1/device"


def test_7900xtx_and_raphael_igpu(tmp_path):
    r = rig("4090-7900xtx.json")
    tree = DirTree(write_tree(r["sysfs"], tmp_path))
    probe = AmdSysfsProbe(tree, kernel="6.10.12")
    xtx, igpu = probe.discover(set())
    assert xtx.name == "AMD Radeon RX 7900 XTX" and xtx.kind == "gpu"
    assert xtx.pci_bus_id == "0000:0c:00.0" and xtx.memory_total == 25_753_026_560
    assert xtx.memory_clock_mhz == 1249 and xtx.memory_bandwidth is None  # no bus width
    assert (xtx.pcie_gen, xtx.pcie_width) == (4, 16) and xtx.power_limit_w == 355
    assert xtx.driver == "amdgpu (Linux 6.10.12)"
    assert igpu.kind == "igpu" and igpu.memory_total == 512 * 1024**2
    s = {x.key: x for x in probe.sample()}[xtx.key]
    assert (s.memory_used, s.temperature_c, s.power_w, s.utilization) == (30_310_400, 38, 19, 0)

    (tmp_path / XTX / "mem_info_vram_used").write_text("20000000000\n")
    (tmp_path / XTX / "gpu_busy_percent").write_text("97\n")
    s = {x.key: x for x in probe.sample()}[xtx.key]
    assert s.memory_used == 20_000_000_000 and s.utilization == 97


def test_older_kernel_power_average_and_a_vanished_card(tmp_path):
    r = rig("4090-7900xtx.json")
    r["sysfs"][f"{XTX}/hwmon/hwmon4/power1_average"] = "250000000"
    write_tree(r["sysfs"], tmp_path)
    probe = AmdSysfsProbe(DirTree(tmp_path))
    xtx, igpu = probe.discover(set())
    assert {s.key: s for s in probe.sample()}[xtx.key].power_w == 250
    (tmp_path / XTX / "mem_info_vram_used").unlink()  # card fell off the bus
    samples = {s.key: s for s in probe.sample()}
    assert samples[xtx.key].stale and not samples[igpu.key].stale


def test_pp_dpm_mclk_parsing():
    assert max_memory_clock("0: 96Mhz *\n1: 456Mhz\n3: 1249Mhz") == 1249
    assert max_memory_clock("") is None


def test_fallback_chain_without_nvml_shows_nvidia_cards_partially(tmp_path):
    r = rig("3090-p40.json")
    tree = DirTree(write_tree(r["sysfs"], tmp_path))
    no_nvml = RecordedNvmlProbe({"unavailable": "no NVIDIA driver"})
    inv = discover([no_nvml, AmdSysfsProbe(tree), OtherSysfsProbe(tree)])
    assert [(d.name, d.partial) for d in inv.machine.devices] == [
        ("NVIDIA GeForce RTX 3090", True),
        ("NVIDIA Tesla P40", True),
    ]
    assert inv.notes[0] == "NVML: no NVIDIA driver"


def test_nvml_claims_its_cards_so_sysfs_does_not_repeat_them(tmp_path):
    r = rig("laptop-irisxe-3060m.json")
    tree = DirTree(write_tree(r["sysfs"], tmp_path))
    inv = discover([RecordedNvmlProbe(r["nvml"]), AmdSysfsProbe(tree), OtherSysfsProbe(tree)])
    names = [(d.name, d.kind, d.partial) for d in inv.machine.devices]
    assert names == [
        ("NVIDIA GeForce RTX 3060 Laptop GPU", "gpu", False),
        ("Intel Iris Xe Graphics", "igpu", True),
    ]


def test_bmc_display_adapter_is_not_a_gpu(tmp_path):
    tree = DirTree(write_tree(rig("no-gpu-server.json")["sysfs"], tmp_path))
    inv = discover([AmdSysfsProbe(tree), OtherSysfsProbe(tree)])
    assert inv.machine.devices == []
    assert inv.cpu_only_line.endswith("LayerLab runs on the CPU only.")
