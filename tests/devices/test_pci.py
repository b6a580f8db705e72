from layerlab.core.devices.pci import (
    device_name,
    normalise_bus_id,
    pcie_gen_from_speed,
)


def test_bus_ids_from_every_source_compare_equal():
    nvml, cuda, vulkan, short = "00000000:0B:00.0", "0000:0b:00.0", "0000:0B:00.0", "0b:00.0"
    assert {normalise_bus_id(x) for x in (nvml, cuda, vulkan, short)} == {"0000:0b:00.0"}
    assert normalise_bus_id("0001:c4:00.1") == "0001:c4:00.1"
    assert normalise_bus_id("") is None
    assert normalise_bus_id("RPC0") is None
    assert normalise_bus_id("0000:01:00") == "0000:01:00.0"


def test_pcie_generation_from_sysfs_speed():
    assert pcie_gen_from_speed("16.0 GT/s PCIe") == 4
    assert pcie_gen_from_speed("2.5 GT/s PCIe") == 1
    assert pcie_gen_from_speed("8.0 GT/s PCIe") == 3
    assert pcie_gen_from_speed("Unknown") is None


def test_names_revision_tells_apart_cards_on_one_chip(tmp_path):
    none = tmp_path / "absent"
    assert device_name(0x1002, 0x744C, 0xC8, none, ()) == "AMD Radeon RX 7900 XTX"
    assert device_name(0x1002, 0x744C, 0xCC, none, ()) == "AMD Radeon RX 7900 XT"
    assert device_name(0x1002, 0x9999, 0x00, none, ()) == "AMD GPU 1002:9999"


def test_names_from_system_id_files(tmp_path):
    ids = tmp_path / "amdgpu.ids"
    ids.write_text("# List\n1.0.0\n73A5,\tC0,\tAMD Radeon RX 6950 XT\n")
    pci = tmp_path / "pci.ids"
    pci.write_text("8086  Intel Corporation\n\t56a5  DG2 [Arc A380]\n\t\t1234 5678  sub\n")
    assert device_name(0x1002, 0x73A5, 0xC0, ids, ()) == "AMD Radeon RX 6950 XT"
    assert device_name(0x8086, 0x56A5, None, ids, (pci,)) == "DG2 [Arc A380]"
