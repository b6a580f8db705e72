"""The Devices panel, offscreen, fed by recorded rigs and by a real worker + engine."""

from __future__ import annotations

import threading

import pynvml
import pytest

from layerlab.core.devices.host_probe import HostProbe
from layerlab.core.devices.inventory import discover
from layerlab.core.devices.model import DeviceInfo, DeviceSample
from layerlab.core.devices.nvml_probe import NvmlProbe
from layerlab.core.devices.rig import rig_inventory
from layerlab.core.load_plan import layers_by_device
from layerlab.ui.devices import DevicesPanel
from layerlab.ui.devices.feed import HIDDEN_INTERVAL_S, VISIBLE_INTERVAL_S, DeviceFeed
from tests.devices.conftest import rig

pytestmark = pytest.mark.gui


def rig_panel(qtbot, r: dict) -> DevicesPanel:
    feed = DeviceFeed(inventory=lambda: rig_inventory(r, nvml=NvmlProbe()))
    panel = DevicesPanel(feed=feed)
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    qtbot.waitUntil(
        lambda: bool(panel.gauges) and all(g.sample for g in panel.gauges.values()), timeout=5000
    )
    return panel


@pytest.mark.parametrize(
    ("name", "cpu_only"),
    [
        ("3090-p40.json", False),
        ("4090-7900xtx.json", False),
        ("laptop-irisxe-3060m.json", False),
        ("no-gpu-server.json", True),
    ],
)
def test_one_gauge_per_fixture_device(qtbot, playback, name, cpu_only):
    r = rig(name)
    playback(r)
    panel = rig_panel(qtbot, r)
    try:
        expected = rig_inventory(rig(name)).machine.devices
        assert [g.info.name for g in panel.gauges.values()] == [d.name for d in expected]
        assert list(panel.groups) == [r["name"]]
        assert ("CPU only" in panel.status.text()) == cpu_only, panel.status.text()
    finally:
        panel.close()
    assert not panel.feed.running


def test_gauges_follow_samples_go_amber_and_stale(qtbot, playback):
    r = rig("2x3060.json")
    pb = playback(r)
    panel = rig_panel(qtbot, r)
    try:
        a, b = panel.gauge_for("CUDA0"), panel.gauge_for("CUDA1")
        assert a.memory.text() == "310 MiB / 12.0 GiB" and a.bar.level == "ok"
        assert "PCIe link</b></td><td>Gen 3 x4" in b.toolTip()
        assert "360 GB/s peak (7501 MHz, 192-bit)" in a.toolTip()
        assert "CUDA1" in b.toolTip()
        total = 12 * 1024**3
        pb.devices[0]["memory"] = {"total": total, "free": total // 10, "used": total * 9 // 10}
        pb.devices[1]["memory"] = {"nvml_error": pynvml.NVML_ERROR_GPU_IS_LOST}
        qtbot.waitUntil(lambda: a.memory.text() == "10.8 / 12.0 GiB" and b.stale, timeout=5000)
        assert a.bar.level == "near" and not a.stale
        assert b.problem.isVisibleTo(panel) and "GPU is lost" in b.problem.text()
        assert b.memory.text() == "250 MiB / 12.0 GiB"  # last good numbers, greyed
    finally:
        panel.close()


def test_placement_and_model_share_by_llama_name(qtbot, playback):
    r = rig("3090-p40.json")
    playback(r)
    panel = rig_panel(qtbot, r)
    try:
        panel.set_layer_placement(layers_by_device(["CUDA0"] * 10 + ["CUDA1"] * 21))
        panel.set_model_memory({"CUDA1": 3 * 1024**3})
        assert panel.gauge_for("CUDA0").placement.text() == "layers 0-9"
        assert panel.gauge_for("CUDA1").placement.text() == "layers 10-29 + output"
        assert panel.gauge_for("CUDA1").model_share.text() == "model 3.0 GiB"
        panel.set_layer_placement({})
        assert not panel.gauge_for("CUDA0").placement.isVisibleTo(panel)
    finally:
        panel.close()


class HangingProbe:
    name = "stuck driver"

    def __init__(self, release: threading.Event):
        self.release = release

    def discover(self, claimed):
        return [DeviceInfo(key="stuck", vendor="other", name="Stuck GPU", memory_total=8)]

    def sample(self) -> list[DeviceSample]:
        self.release.wait(30)
        return []

    def close(self):
        pass


def test_a_hanging_probe_greys_one_gauge_and_the_others_keep_updating(qtbot):
    release = threading.Event()
    feed = DeviceFeed(
        inventory=lambda: discover([HangingProbe(release), HostProbe()]), probe_timeout=0.2
    )
    feed.set_interval(0.05)
    panel = DevicesPanel(feed=feed)
    qtbot.addWidget(panel)
    rounds = []
    feed.samples_ready.connect(lambda s: rounds.append(s))
    panel.show()
    try:
        qtbot.waitUntil(lambda: len(rounds) >= 4, timeout=5000)
        stuck, host = panel.gauges["stuck"], panel.gauges["host"]
        assert stuck.stale and "did not answer within 0.2 s" in stuck.problem.text()
        assert not host.stale and len(host.history.points) >= 4
    finally:
        release.set()
        panel.close()


def test_hidden_panel_samples_slower(qtbot, playback):
    r = rig("1080ti.json")
    playback(r)
    panel = rig_panel(qtbot, r)
    try:
        assert panel.feed.interval == VISIBLE_INTERVAL_S
        panel.hide()
        assert panel.feed.interval == HIDDEN_INTERVAL_S and panel.feed.running
        panel.show()
        assert panel.feed.interval == VISIBLE_INTERVAL_S
        panel.stop_sampling()
        assert not panel.feed.running
    finally:
        panel.close()


def test_layers_on_a_real_worker_after_a_real_load(qtbot, demo_model, worker):
    from layerlab.core.load_plan import DeviceRef, LoadPlan
    from tests.spine.engine_helpers import load

    plan = LoadPlan(
        str(demo_model), n_ctx=512, devices=[DeviceRef.rpc(worker.endpoint)], n_gpu_layers=21
    )
    sup, ready = load(plan)
    try:
        panel = DevicesPanel()
        qtbot.addWidget(panel)
        panel.set_workers([worker.endpoint])
        panel.show()
        qtbot.waitUntil(
            lambda: (
                worker.endpoint in panel.groups
                and panel.gauge_for(f"RPC {worker.endpoint}") is not None
            ),
            timeout=15000,
        )
        placement = layers_by_device(ready.placement.layer_devices)
        panel.set_layer_placement(placement)
        remote = panel.gauge_for(f"RPC {worker.endpoint}")
        assert remote.info.machine == worker.endpoint
        assert remote.placement.text() == "layers 10-29 + output"
        assert panel.gauge_for("CPU").placement.text() == "layers 0-9"
        panel.close()
    finally:
        sup.stop()
