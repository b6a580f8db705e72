"""llama.cpp's device list matched to ours by PCI bus id."""

from __future__ import annotations

from layerlab.core.devices.ggml_view import match_llama
from layerlab.core.devices.model import DeviceInfo

HOST = DeviceInfo(key="host", vendor="cpu", name="Host RAM (x)", kind="cpu")
A = DeviceInfo(key="nvml:GPU-a", vendor="nvidia", name="RTX 3090", pci_bus_id="0000:01:00.0")
B = DeviceInfo(key="drm:0000:0c:00.0", vendor="amd", name="RX 7900 XTX", pci_bus_id="0000:0c:00.0")


def dev(name, bus, total=24 * 1024**3, free=20 * 1024**3, type_="gpu", desc=""):
    return {
        "name": name,
        "description": desc or name,
        "type": type_,
        "free": free,
        "total": total,
        "device_id": bus,
    }


def test_matches_across_spellings_and_names_the_cpu():
    m = match_llama(
        [A, B, HOST],
        [dev("CUDA0", "0000:01:00.0"), dev("Vulkan1", "0000:0C:00.0"), dev("CPU", "", type_="cpu")],
    )
    by_key = {d.key: d for d in m.devices}
    assert by_key[A.key].llama_name == "CUDA0"
    assert by_key[B.key].llama_name == "Vulkan1"
    assert by_key["host"].llama_name == "CPU"
    assert m.unseen_by_llama == [] and m.llama_only == []


def test_a_gpu_llama_cpp_does_not_see():
    m = match_llama([A, B, HOST], [dev("CUDA0", "0000:01:00.0"), dev("CPU", "", type_="cpu")])
    assert m.unseen_by_llama == [B.key]
    assert {d.key: d.llama_name for d in m.devices}[B.key] is None


def test_a_device_only_llama_cpp_sees_gets_its_own_partial_gauge():
    m = match_llama(
        [A, HOST],
        [
            dev("CUDA0", "0000:01:00.0"),
            dev("Vulkan1", "0000:0c:00.0", desc="AMD Radeon RX 7900 XTX"),
            dev("SYCL0", "", desc="Intel(R) Arc(TM) A770"),
        ],
    )
    extra = {d.key: d for d in m.devices if d.key.startswith("ggml:")}
    assert set(extra) == {"ggml:Vulkan1", "ggml:SYCL0"}
    assert extra["ggml:Vulkan1"].vendor == "amd" and extra["ggml:Vulkan1"].partial
    assert extra["ggml:Vulkan1"].pci_bus_id == "0000:0c:00.0"
    assert extra["ggml:SYCL0"].vendor == "intel"
    assert m.names["Vulkan1"] == "ggml:Vulkan1"
    (s, _) = m.llama_only
    assert s.memory_used == 4 * 1024**3 and s.memory_total == 24 * 1024**3


def test_one_gpu_under_two_backends_is_one_gauge_with_two_names():
    m = match_llama([A], [dev("CUDA0", "0000:01:00.0"), dev("Vulkan0", "0000:01:00.0")])
    assert len(m.devices) == 1 and m.devices[0].llama_name == "CUDA0"
    assert m.names == {"CUDA0": A.key, "Vulkan0": A.key}
