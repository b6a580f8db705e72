"""Devices panel benchmark: GUI event-loop stall while sampling 8 devices at 2 Hz and
receiving a fast token stream, and the cost of one sampling round per device.

    QT_QPA_PLATFORM=offscreen python bench/devices_stall.py [--seconds 10]

Devices come from recorded rigs: 5 NVIDIA GPUs played through the real pynvml (fake
libnvidia-ml), 2 AMD GPUs from a sysfs tree written as real files, and the real host.
Stall = how late a 5 ms heartbeat timer fires. Targets (issue 3): max <= 50 ms, < 5 ms per
device per round. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support (NVML playback)
RIGS = ROOT / "tests" / "fixtures" / "rigs"


class NoneKeeper:
    """Workaround, bench only: PySide6 6.12.0 on CPython < 3.12 drops one reference to None
    on every call that returns void (label.setText, processEvents, each timer slot), so a
    busy Qt loop kills the process with "none_dealloc" within seconds. On 3.12+ None is
    immortal and this is a no-op. Measured here: sys.getrefcount(None) falls by exactly 1
    per QLabel.setText call."""

    def __init__(self) -> None:
        self.base = sys.getrefcount(None)

    def top_up(self) -> None:
        import ctypes

        missing = self.base - sys.getrefcount(None)
        if sys.version_info < (3, 12) and missing > 0:
            for _ in range(missing):
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))


def eight_device_rig() -> dict:
    from layerlab.core.devices.rig import read_rig

    nv = [
        copy.deepcopy(d)
        for name in ("3090-p40.json", "2x3060.json", "1080ti.json")
        for d in read_rig(RIGS / name)["nvml"]["devices"]
    ]
    amd = read_rig(RIGS / "4090-7900xtx.json")
    sysfs = {k: v for k, v in amd["sysfs"].items() if "/card0/" not in k}  # AMD cards only
    return {
        "layerlab_rig": 1,
        "name": "bench: 8 devices",
        "host": amd["host"],
        "nvml": {"driver_version": "550.120", "cuda_driver_version": 12040, "devices": nv},
        "sysfs": sysfs,
        "llama_cpp": None,
    }


def build_inventory(rig: dict, sysfs_dir: str):
    from layerlab.core.devices.amd_sysfs import AmdSysfsProbe
    from layerlab.core.devices.host_probe import HostProbe
    from layerlab.core.devices.inventory import discover
    from layerlab.core.devices.nvml_probe import NvmlProbe
    from layerlab.core.devices.sysfs_tree import DirTree, write_tree

    tree = DirTree(write_tree(rig["sysfs"], sysfs_dir))
    return discover([NvmlProbe(), AmdSysfsProbe(tree), HostProbe()], machine_name=rig["name"])


def round_costs(inv, rounds: int = 200) -> None:
    from layerlab.core.devices.sampler import Sampler

    print("one sampling round (background thread, not the GUI):")
    for probe, keys in inv.groups:
        probe.sample()  # warm
        t = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            probe.sample()
            t.append(time.perf_counter() - t0)
        med = statistics.median(t) * 1000
        print(
            f"  {probe.name:<14} {len(keys)} device(s): {med:6.3f} ms per round, "
            f"{med / len(keys):6.3f} ms per device (median of {rounds})"
        )
    sampler = Sampler(inv.groups, timeout=1.0)
    t = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        sampler.round()
        t.append(time.perf_counter() - t0)
    n = sum(len(k) for _, k in inv.groups)
    med, p99 = statistics.median(t) * 1000, sorted(t)[int(len(t) * 0.99) - 1] * 1000
    print(
        f"  whole round, {n} devices, threads + deadline: median {med:.2f} ms "
        f"({med / n:.3f} ms per device), p99 {p99:.2f} ms"
    )


def stall(inv, seconds: float) -> None:
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication, QPlainTextEdit, QSplitter

    from layerlab.ui.devices import DevicesPanel
    from layerlab.ui.devices.feed import DeviceFeed

    app = QApplication.instance() or QApplication(sys.argv[:1])
    feed = DeviceFeed(inventory=lambda: inv)  # 2 Hz: the panel's visible rate
    window = QSplitter()
    chat = QPlainTextEdit()
    panel = DevicesPanel(feed=feed)
    window.addWidget(chat)
    window.addWidget(panel)
    window.resize(1300, 800)
    window.show()

    tokens = [0]

    def token() -> None:  # a token stream at ~100 tok/s, appended like a chat pane would
        tokens[0] += 1
        chat.insertPlainText(" tok")

    tok_timer = QTimer()
    tok_timer.timeout.connect(token)
    tok_timer.start(10)

    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def beat() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    heart = QTimer()
    heart.setTimerType(heart.timerType().PreciseTimer)
    heart.timeout.connect(beat)
    heart.start(5)
    rounds = [0]
    feed.samples_ready.connect(lambda _: rounds.__setitem__(0, rounds[0] + 1))

    end = time.monotonic() + seconds
    keep_none = NoneKeeper()
    while time.monotonic() < end:
        app.processEvents()
        keep_none.top_up()
        time.sleep(0.0005)
    heart.stop()
    tok_timer.stop()
    panel.stop_sampling()
    window.close()

    stalls = sorted(max(0.0, g - 5.0) for g in gaps[5:])
    p99 = stalls[int(len(stalls) * 0.99) - 1]
    print(
        f"GUI event loop over {seconds:g} s: {len(panel.gauges)} gauges, {rounds[0]} sampling "
        f"rounds ({rounds[0] / seconds:.1f} Hz), {tokens[0]} tokens"
    )
    print(
        f"  stall beyond the 5 ms heartbeat: max {stalls[-1]:.1f} ms, p99 {p99:.1f} ms, "
        f"median {statistics.median(stalls):.2f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from tests.support.nvml_playback import NvmlPlayback

    rig = eight_device_rig()
    with NvmlPlayback(rig["nvml"]), tempfile.TemporaryDirectory() as tmp:
        inv = build_inventory(rig, tmp)
        print(
            f"{sum(len(k) for _, k in inv.groups)} devices: "
            + ", ".join(d.name for d in inv.machine.devices)
        )
        round_costs(inv)
        stall(inv, args.seconds)
        inv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
