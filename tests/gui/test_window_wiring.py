"""The whole window wired to real data: tabs, the layer map's plan is what loads, the gauges
and the map show the real load, and the GUI thread never waits on a header or a probe."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from layerlab.core.devices.placement import memory_by_device
from layerlab.core.engine.supervisor import Failed, Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.load_plan import expected_layer_devices, layers_by_device
from layerlab.core.settings import SavedWorker, Settings
from layerlab.ui.main_window import MainWindow
from layerlab.ui.wiring import plan_feed
from layerlab.ui.wiring.engine_views import same_load
from tests.support.synthetic_gguf import LLAMA_70B, write_model

pytestmark = pytest.mark.gui
TABS = ["Workers", "Devices", "Layer map", "Share", "API"]


@pytest.fixture
def window(qtbot, demo_model, tmp_path):
    made: list[MainWindow] = []

    def make(workers: list[str] = (), model=None) -> MainWindow:
        settings = Settings(n_ctx=2048, workers=[SavedWorker(w) for w in workers])
        head = Head(
            settings,
            tmp_path / "settings.json",
            state_dir=tmp_path / "head",
            watch=WatchSettings(interval_s=0.3),
        )
        win = MainWindow(head, model or demo_model, "demo")
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()
        win.controller.shutdown()


def choose_strategy(qtbot, win, key: str) -> None:
    """Pick a strategy in the map's combo box, as a person would."""
    qtbot.waitUntil(lambda: win.layer_map.result is not None, timeout=10_000)
    combo = win.layer_map.controls.strategy
    with qtbot.waitSignal(win.layer_map.planChanged, timeout=5000):
        combo.setCurrentIndex(combo.findData(key))


def wait_ready(qtbot, win, timeout=60_000) -> Ready:
    qtbot.waitUntil(lambda: isinstance(win.controller.state, Ready | Failed), timeout=timeout)
    assert isinstance(win.controller.state, Ready), win.controller.state
    qtbot.waitUntil(lambda: win.chat.send_button.isEnabled(), timeout=5000)
    return win.controller.state


def test_tabs_and_sampling_only_while_the_devices_tab_shows(qtbot, window):
    win = window()
    assert [win.tabs.tabText(i) for i in range(win.tabs.count())] == TABS
    assert win.tabs.currentWidget() is win.workers
    assert not win.devices.feed.running

    rounds: list[float] = []
    win.devices.feed.samples_ready.connect(lambda _s: rounds.append(time.monotonic()))
    win.tabs.setCurrentWidget(win.devices)
    assert win.devices.feed.running
    qtbot.waitUntil(lambda: len(rounds) >= 2 and bool(win.devices.gauges), timeout=15_000)
    assert all(g.sample for g in win.devices.gauges.values())

    win.tabs.setCurrentWidget(win.layer_map)
    assert not win.devices.feed.running
    left = time.monotonic()
    qtbot.wait(1500)  # three sampling intervals: a running lane would have sampled
    assert not [t for t in rounds if t > left + 0.2]  # a round in flight may still land

    win.tabs.setCurrentWidget(win.devices)
    n = len(rounds)
    qtbot.waitUntil(lambda: len(rounds) > n, timeout=15_000)
    win.tabs.setCurrentWidget(win.share)
    assert not win.devices.feed.running


def test_the_map_plans_for_the_model_and_re_plans_for_another(qtbot, window, tmp_path):
    win = window()
    qtbot.waitUntil(
        lambda: win.plan_feed.settled and win.layer_map.result is not None, timeout=10_000
    )
    assert "30 layers" in win.layer_map.title.text()
    assert win.layer_map.result.plan.n_ctx == 2048  # the settings' context, not changed
    assert list(win.layer_map.rows) == ["CPU"]

    big = write_model(tmp_path / "70b.gguf", LLAMA_70B, sparse=True)
    win.plan_feed.set_model(big)
    qtbot.waitUntil(lambda: win.plan_feed.current_plan() is not None, timeout=10_000)
    assert "80 layers" in win.layer_map.title.text()
    assert win.plan_feed.current_plan().model_path == str(big)

    win.plan_feed.set_model(tmp_path / "gone.gguf")
    qtbot.waitUntil(lambda: win.plan_feed.settled, timeout=10_000)
    title = win.layer_map.title.text()
    assert "gone.gguf" in title and "there is no such file" in title
    assert win.plan_feed.current_plan() is None  # Load falls back to llama.cpp's default


def test_what_the_map_shows_loads_and_gauges_and_map_show_it(qtbot, window, start_worker):
    w1, w2 = start_worker(), start_worker()
    win = window([w1.endpoint, w2.endpoint])
    qtbot.waitUntil(lambda: len(win.head.results) == 2, timeout=10_000)
    # Fastest-first keeps a small model on this machine when workers only cost speed (the
    # map's notes say so); the person picks llama.cpp's default split to use both workers.
    choose_strategy(qtbot, win, "proportional")
    labels = [f"RPC {w1.endpoint}", f"RPC {w2.endpoint}"]
    qtbot.waitUntil(lambda: list(win.layer_map.rows) == ["CPU", *labels], timeout=10_000)
    planned = win.layer_map.result.plan
    assert [d.label for d in planned.devices] == labels

    win.load()
    ready = wait_ready(qtbot, win)
    assert same_load(ready.plan, planned)  # the map's plan went to the engine unchanged
    n_layer = ready.placement.n_layer
    assert ready.placement.layer_devices == expected_layer_devices(planned, n_layer)

    # the map: forecast beside the actual allocation, per device
    actual = memory_by_device(ready.placement.allocations)
    assert set(actual) == {"CPU", *labels}
    for label in ["CPU", *labels]:
        text = win.layer_map.rows[label].actual.text()
        assert "forecast" in text and "actual" in text and "error" in text, (label, text)

    # the gauges: which layers each device holds, and the model's share of its memory
    win.tabs.setCurrentWidget(win.devices)
    expected = layers_by_device(ready.placement.layer_devices)
    qtbot.waitUntil(
        lambda: all(win.devices.gauge_for(lb) is not None for lb in labels), timeout=20_000
    )
    for label in labels:
        gauge = win.devices.gauge_for(label)
        assert gauge.placement.text() == expected[label]
        assert gauge.model_share.text().startswith("model ")
    assert win.devices.gauge_for("CPU").placement.text() == ""  # only the embeddings here

    # a re-planned map no longer claims the loaded plan's actual numbers
    choose_strategy(qtbot, win, "fastest")  # keeps this small model off loopback workers
    assert not same_load(win.layer_map.result.plan, ready.plan)
    assert all(not r.actual.text() for r in win.layer_map.rows.values())
    choose_strategy(qtbot, win, "proportional")
    assert "actual" in win.layer_map.rows[labels[0]].actual.text()

    win.controller.unload()
    qtbot.waitUntil(lambda: not isinstance(win.controller.state, Ready), timeout=10_000)
    qtbot.waitUntil(lambda: win.devices.gauge_for(labels[0]).placement.text() == "", timeout=5000)
    assert all(not r.actual.text() for r in win.layer_map.rows.values())


def test_the_gui_thread_never_waits_on_the_header_or_the_probes(qtbot, window, monkeypatch):
    """A slow disk and a slow hardware probe (0.8 s each) must not freeze the window."""
    slow_facts, slow_probe = plan_feed.open_facts, plan_feed.this_machine_devices

    def slowly(fn):
        def run(*a):
            time.sleep(0.8)
            return fn(*a)

        return run

    monkeypatch.setattr(plan_feed, "open_facts", slowly(slow_facts))
    monkeypatch.setattr(plan_feed, "this_machine_devices", slowly(slow_probe))

    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    try:
        win = window()
        last[0] = time.monotonic()  # building the widgets is not what this measures
        win.tabs.setCurrentWidget(win.devices)  # starts the device lane (llama.cpp child)
        win.load()  # waits for the map's plan, then loads it
        assert win.plan_feed.waiting
        ready = wait_ready(qtbot, win)
        qtbot.waitUntil(lambda: bool(win.devices.gauges), timeout=15_000)
        qtbot.waitUntil(lambda: win.devices.gauge_for("CPU").placement.text() != "", timeout=5000)
    finally:
        timer.stop()
    assert ready.placement_text == "CPU: layers 0-29 + output"
    assert len(gaps) > 50
    # Generous on a shared 2-core machine; a blocking read or probe alone would be 800 ms.
    assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


def test_the_context_chosen_in_the_map_loads_and_is_kept(qtbot, window, tmp_path):
    win = window()
    qtbot.waitUntil(
        lambda: win.plan_feed.settled and win.layer_map.result is not None, timeout=10_000
    )
    with qtbot.waitSignal(win.layer_map.planChanged, timeout=5000):
        win.layer_map.controls.ctx.setValue(1024)
    win.load()
    ready = wait_ready(qtbot, win)
    assert ready.plan.n_ctx == 1024
    assert Settings.load(tmp_path / "settings.json").n_ctx == 1024


def test_a_library_model_opens_in_the_layer_map(qtbot, window, demo_model, tmp_path):
    import shutil

    win = window()
    win.show_page("models")
    assert win.pages.currentWidget() is win.models
    other = tmp_path / "library-copy.gguf"
    shutil.copy(demo_model, other)
    win.models.loadRequested.emit(str(other))
    assert win.tabs.currentWidget() is win.layer_map and win.cluster_panel.isVisible()
    qtbot.waitUntil(
        lambda: (
            win.layer_map.result is not None and win.layer_map.result.plan.model_path == str(other)
        ),
        timeout=10_000,
    )
    assert "press Load" in win.load_bar.message.text()
    assert win.head.settings.model_path == str(other)
    win.show_page("chat")
    assert win.pages.currentWidget() is win.chat
