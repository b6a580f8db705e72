"""Screenshots of the Devices panel for recorded rigs.

    xvfb-run -a python docs/screenshots/devices_screenshots.py

Each rig's NVML recording plays through the real pynvml; its sysfs through the real sysfs
probes. A timer animates the recording (a model loading, then generating) at compressed
time: the history line is set to a 6 s window so a few seconds of run fill it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QScrollArea

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support (NVML playback)

from layerlab.core.devices.nvml_probe import NvmlProbe  # noqa: E402
from layerlab.core.devices.placement import placement_by_device  # noqa: E402
from layerlab.core.devices.rig import read_rig, rig_inventory  # noqa: E402
from layerlab.core.devices.sysfs_tree import DictTree  # noqa: E402
from layerlab.ui.devices import DevicesPanel  # noqa: E402
from layerlab.ui.devices.feed import DeviceFeed  # noqa: E402
from tests.support.nvml_playback import NvmlPlayback  # noqa: E402

RIGS = ROOT / "tests" / "fixtures" / "rigs"
OUT = Path(__file__).resolve().parent
GiB = 1024**3

# rig file, layers per llama.cpp device (31 units = 30 blocks + output), model bytes there
SHOTS = {
    "3090-p40": (
        "3090-p40.json",
        ["CUDA0"] * 19 + ["CUDA1"] * 12,
        {"CUDA0": int(13.1 * GiB), "CUDA1": int(8.4 * GiB)},
    ),
    "4090-7900xtx": (
        "4090-7900xtx.json",
        ["Vulkan0"] * 16 + ["Vulkan1"] * 15,
        {"Vulkan0": int(19.6 * GiB), "Vulkan1": int(18.3 * GiB)},
    ),
    "laptop": (
        "laptop-irisxe-3060m.json",
        ["CPU"] * 12 + ["CUDA0"] * 19,
        {"CUDA0": int(5.3 * GiB), "CPU": int(3.0 * GiB)},
    ),
    "no-gpu": ("no-gpu-server.json", ["CPU"] * 31, {"CPU": int(4.4 * GiB)}),
}


def animate(
    pb: NvmlPlayback, tree: DictTree, model: dict[str, int], names: dict[str, str], t: float
) -> None:
    """Memory ramps up to the model's share, then utilisation pulses with generation."""
    ramp = min(1.0, t / 2.0)
    for dev in pb.devices:
        idle = dev["_idle"] if "_idle" in dev else dev["memory"]["used"]
        dev["_idle"] = idle
        total = dev["memory"]["total"]
        share = dev.get("_model", 0)
        used = min(total, idle + int(share * ramp))
        dev["memory"] = {"total": total, "used": used, "free": total - used}
        if ramp >= 1.0 and share:
            dev["utilization"] = {"gpu": int(55 + 40 * abs(math.sin(t * 3))), "memory": 40}
            dev["power_mw"] = (
                int(dev.get("power_limit_mw", 200000) * 0.7)
                if isinstance(dev.get("power_limit_mw"), int)
                else dev["power_mw"]
            )
    for rel in list(tree.files):
        if rel.endswith("mem_info_vram_used") and "card1" in rel and "Vulkan1" in model:
            total = int(tree.files[rel.replace("_used", "_total")])
            idle = 30_310_400
            tree.files[rel] = str(min(total, idle + int(model["Vulkan1"] * ramp)))
        if rel.endswith("gpu_busy_percent") and "card1" in rel and ramp >= 1.0:
            tree.files[rel] = str(int(50 + 45 * abs(math.cos(t * 3))))


def shoot(
    app: QApplication, slug: str, rig_file: str, layers: list[str], model: dict[str, int]
) -> Path:
    rig = read_rig(RIGS / rig_file)
    pb = NvmlPlayback(rig["nvml"]).install()
    inv0 = rig_inventory(rig)
    for i, info in enumerate(d for d in inv0.machine.devices if d.vendor == "nvidia"):
        pb.devices[i]["_model"] = model.get(info.llama_name or "", 0)
    holder = {}

    def make_inventory():
        inv = rig_inventory(rig, nvml=NvmlProbe())
        holder["tree"] = (
            inv.groups[1][0].tree
            if len(inv.groups) > 1 and hasattr(inv.groups[1][0], "tree")
            else DictTree({})
        )
        return inv

    feed = DeviceFeed(inventory=make_inventory)
    feed.set_interval(0.1)
    panel = DevicesPanel(feed=feed)
    panel.setWindowTitle(f"LayerLab · Devices · {rig['name']}")
    panel.resize(760, 470 if len(inv0.machine.devices) <= 2 else 560)
    panel.show()
    t = [0.0]

    def tick() -> None:
        t[0] += 0.1
        animate(pb, holder.get("tree", DictTree({})), model, {}, t[0])
        for g in panel.gauges.values():
            g.history.window_s = 6.0

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(100)
    QTest.qWait(6500)
    panel.set_layer_placement(placement_by_device(layers))
    panel.set_model_memory(model)
    QTest.qWait(300)  # let the layouts take the placement lines in
    body = panel.findChild(QScrollArea).widget()
    panel.resize(760, body.sizeHint().height() + panel.status.sizeHint().height() + 30)
    QTest.qWait(300)
    path = OUT / f"devices-{slug}.png"
    panel.grab().save(str(path))
    timer.stop()
    panel.close()
    pb.uninstall()
    return path


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if len(sys.argv) != 2:  # one rig per process: each installs its own fake NVML library
        import subprocess

        return max(subprocess.call([sys.executable, __file__, slug]) for slug in SHOTS)
    print(shoot(app, sys.argv[1], *SHOTS[sys.argv[1]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
