"""NVIDIA rigs played through the real pynvml; only libnvidia-ml is replaced."""

from __future__ import annotations

import pynvml
import pytest

from layerlab.core.devices.nvml_probe import NvmlProbe
from layerlab.core.devices.probe_chain import ProbeUnavailable
from layerlab.core.devices.rig import RIG_FORMAT, load_rig
from tests.devices.conftest import ALL_RIGS, RIGS, rig

NVIDIA_RIGS = [n for n in ALL_RIGS if "devices" in rig(n)["nvml"]]


def test_3090_p40_through_pynvml(playback):
    pb = playback(rig("3090-p40.json"))
    probe = NvmlProbe()
    try:
        infos = probe.discover(set())
        samples = {s.key: s for s in probe.sample()}
    finally:
        probe.close()
    r3090, p40 = infos
    assert r3090.name == "NVIDIA GeForce RTX 3090" and p40.name == "Tesla P40"
    assert r3090.pci_bus_id == "0000:01:00.0" and p40.pci_bus_id == "0000:0b:00.0"
    assert r3090.memory_total == 24 * 1024**3
    assert r3090.memory_bandwidth == 936_096_000_000  # the datasheet's 936 GB/s
    assert p40.memory_bandwidth == 347_040_000_000
    assert (p40.pcie_gen, p40.pcie_width) == (3, 4)
    assert r3090.driver == "NVIDIA 550.120" and r3090.power_limit_w == 350
    s = samples[r3090.key]
    assert s.memory_used == 612 * 1024**2 and s.temperature_c == 41 and s.power_w == 24.531
    # the numbers came through pynvml's own wrappers and structs, not around them
    assert {
        "nvmlDeviceGetPciInfo_v3",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMemoryBusWidth",
    } <= set(pb.calls)


@pytest.mark.parametrize("name", NVIDIA_RIGS)
def test_live_probe_agrees_with_load_rig_and_records_the_same(playback, name):
    r = rig(name)
    playback(r)
    probe = NvmlProbe()
    try:
        live = probe.discover(set())
        recorded = probe.record()
    finally:
        probe.close()
    from_file = [d for d in load_rig(RIGS / name).devices if d.vendor == "nvidia"]
    assert [d.key for d in live] == [d.key for d in from_file]
    assert [d.memory_bandwidth for d in live] == [d.memory_bandwidth for d in from_file]
    assert recorded["devices"] == r["nvml"]["devices"]
    assert RIG_FORMAT == 1


def test_unsupported_power_reads_as_unknown(playback):
    playback(rig("laptop-irisxe-3060m.json"))
    probe = NvmlProbe()
    try:
        (info,) = probe.discover(set())
        (s,) = probe.sample()
    finally:
        probe.close()
    assert info.power_limit_w is None and s.power_w is None and not s.stale
    assert s.temperature_c == 45


def test_a_lost_gpu_is_stale_alone(playback):
    pb = playback(rig("2x3060.json"))
    probe = NvmlProbe()
    try:
        a, b = probe.discover(set())
        pb.devices[1]["memory"] = {"nvml_error": pynvml.NVML_ERROR_GPU_IS_LOST}
        pb.devices[0]["memory"] = {
            "total": 12884901888,
            "free": 2 * 1024**3,
            "used": 12884901888 - 2 * 1024**3,
        }
        samples = {s.key: s for s in probe.sample()}
    finally:
        probe.close()
    assert not samples[a.key].stale and samples[a.key].memory_free == 2 * 1024**3
    assert samples[b.key].stale and "GPU is lost" in samples[b.key].problem


def test_no_driver_is_one_clear_reason(playback):
    playback(rig("no-gpu-server.json"))
    probe = NvmlProbe()
    with pytest.raises(ProbeUnavailable, match="no NVIDIA driver"):
        probe.discover(set())


def test_uninstall_gives_pynvml_back():
    before = pynvml.nvmlLib
    from tests.support.nvml_playback import NvmlPlayback

    with NvmlPlayback(rig("1080ti.json")["nvml"]):
        assert pynvml.nvmlLib is not before
    assert pynvml.nvmlLib is before
