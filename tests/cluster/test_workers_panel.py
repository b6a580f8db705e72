"""The window's Workers list against a real sharing worker on loopback: it is found by mDNS,
paired with its code, listed by name, probed and loaded through its link. The panel is a view of
the head (core/head), which holds the list, the answers and the links."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import default_plan
from layerlab.core.settings import SavedWorker
from layerlab.ui.head_bridge import HeadBridge
from layerlab.ui.workers.workers_panel import WorkersPanel

pytestmark = pytest.mark.gui


@pytest.fixture
def head(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLAB_DISCOVERY", "127.0.0.1")
    # not automatic: the test reads the lost worker in the state, as the person would
    made = Head(
        persist=False,
        automatic=False,
        links=HeadLinks(tmp_path / "head", name="desk", watch_retry_s=0.3),
    )
    yield made
    made.close()


@pytest.fixture
def panel(qtbot, head):
    made = WorkersPanel(HeadBridge(head))
    qtbot.addWidget(made)
    return made


def _found_item(panel: WorkersPanel, name: str):
    for i in range(panel.found_list.count()):
        if panel.found_list.item(i).text().startswith(f"{name} — "):
            return panel.found_list.item(i)
    return None


def test_found_on_the_lan_paired_with_its_code_and_loaded_through_the_link(
    qtbot, panel, start_sharing, demo_model
):
    w = start_sharing("bench-box", announce=True)
    panel.show()
    qtbot.waitUntil(lambda: _found_item(panel, "bench-box") is not None, timeout=15_000)
    item = _found_item(panel, "bench-box")
    assert f"{w.address} · not paired" in item.text()
    panel.found_list.setCurrentItem(item)
    qtbot.mouseClick(panel.pair_button, Qt.MouseButton.LeftButton)
    dialog = panel.pair_dialog
    assert dialog is not None and dialog.isVisible() and dialog.address.text() == w.address
    dialog.code.setText(w.code)
    with qtbot.waitSignal(panel.bridge.workersChanged, timeout=10_000):
        dialog.pair_button.click()
    dialog.done(0)

    # Listed under its name, checked, and gone from the "found" list.
    assert panel.head.workers() == [SavedWorker(w.address, True)]
    assert panel.enabled_addresses() == [w.address] and panel.head.is_paired(w.address)
    assert _found_item(panel, "bench-box") is None
    qtbot.waitUntil(lambda: w.address in panel.head.results, timeout=10_000)
    result = panel.head.results[w.address]
    assert result.ok, result.problem
    # the row follows the head's answer on the GUI thread's next turn, not in the same one
    qtbot.waitUntil(lambda: panel.list.item(0).text().startswith("✔"), timeout=5_000)
    row = panel.list.item(0).text()
    assert row.startswith(f"✔ bench-box ({w.address}) · paired — ready, RPC 7.0.0")
    assert "link ok" in row or "link connecting" in row
    assert "RTT" in row

    # The window's load: the plan names the worker's address; the engine goes through the link.
    controller = panel.head  # the head routes paired workers through their links
    try:
        counts = {a: len(panel.head.results[a].devices) for a in panel.enabled_addresses()}
        controller.load(default_plan(str(demo_model), counts, 1024, "demo"))
        qtbot.waitUntil(lambda: isinstance(controller.state, Ready | Failed), timeout=60_000)
        assert isinstance(controller.state, Ready), controller.state
        assert f"RPC {w.address}" in controller.state.placement_text
        # The load moved the weights through the link: its throughput shows in the row.
        qtbot.waitUntil(
            lambda: "MB/s" in panel.list.item(0).text() or "GB/s" in panel.list.item(0).text(),
            timeout=5_000,
        )
        print("\n" + panel.list.item(0).text())

        # Killed mid-use: the heartbeat reports it, the engine stops, the row says so.
        w.kill()
        qtbot.waitUntil(lambda: isinstance(controller.state, Failed), timeout=2_000)
        assert controller.state.lost_workers == [w.address]
        assert "bench-box" in controller.state.message
        qtbot.waitUntil(lambda: "link lost" in panel.list.item(0).text(), timeout=2_000)
    finally:
        controller.unload()


def test_pair_action_without_a_selection_uses_the_typed_address(qtbot, panel, start_sharing):
    w = start_sharing("rack-box")
    panel.address.setText(w.address)
    panel.found_list.setCurrentItem(None)
    panel.pair_selected()
    dialog = panel.pair_dialog
    assert dialog.address.text() == w.address
    dialog.code.setText(w.code)
    with qtbot.waitSignal(dialog.paired, timeout=10_000):
        dialog.pair_button.click()
    dialog.done(0)
    assert panel.enabled_addresses() == [w.address]
    assert panel.list.item(0).text().startswith(("… rack-box", "✔ rack-box"))
    # A plain address is still a plain worker: no link, no renaming.
    panel.address.setText("127.0.0.1:1")
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.list.item(1).text().startswith("✖"), timeout=10_000)
    assert not panel.head.results["127.0.0.1:1"].ok
    assert panel.list.item(1).text().startswith("✖ 127.0.0.1:1 — Nothing is listening")


def test_the_row_shows_the_wait_per_token_after_an_answer(
    qtbot, panel, start_sharing, start_worker, demo_model
):
    from layerlab.core.load_plan import DeviceRef, LoadPlan
    from layerlab.ui.chat.chat_stream import ChatStream

    w = start_sharing("bench-box")
    plain = start_worker()
    panel.head.links.pair(w.address, w.code, w.fingerprint)
    panel.head.add_worker(w.address)
    panel.head.add_worker(plain.endpoint)
    qtbot.waitUntil(lambda: len(panel.head.results) == 2, timeout=10_000)
    assert panel.head.results[w.address].ok and panel.head.results[plain.endpoint].ok

    controller = panel.head
    try:
        controller.load(
            LoadPlan(
                str(demo_model),
                n_ctx=1024,
                n_threads=1,
                devices=[DeviceRef.rpc(w.address), DeviceRef.rpc(plain.endpoint)],
                tensor_split=[1, 1],
            )
        )
        qtbot.waitUntil(lambda: isinstance(controller.state, Ready | Failed), timeout=60_000)
        assert isinstance(controller.state, Ready), controller.state
        assert "ms/token" not in panel.list.item(0).text()

        stream = ChatStream(
            controller.client(),
            [{"role": "user", "content": "Tell me about the sea."}],
            {"temperature": 0, "seed": 1, "max_tokens": 48},
            panel,
        )
        panel.follow_answer(stream)
        with qtbot.waitSignal(stream.finished, timeout=60_000) as done:
            stream.start()
        assert stream.wait(5)
        timings = done.args[0].timings
        qtbot.waitUntil(lambda: "ms/token" in panel.list.item(0).text(), timeout=5_000)
        row = panel.list.item(0).text()
        print("\n" + row + "\n" + panel.list.item(1).text())
        wait = panel.head.links.info(w.address).wait
        assert wait is not None and wait.final and f"· {wait.text}" in row
        assert "~" not in wait.text  # the final number, from llama.cpp's timings
        assert 0 < wait.ms_per_token < timings["predicted_ms"] / timings["predicted_n"]
        # A plain worker has nothing in between to time it: its row says so.
        assert "measured for paired workers only" in panel.list.item(1).text()
    finally:
        controller.unload()
