"""The window with the real engine: send, stream, Stop, live tok/s, worker lost, reload."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from layerlab.core.engine.supervisor import Failed, Loading, Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.load_plan import expected_layer_devices
from layerlab.core.settings import SavedWorker, Settings
from layerlab.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, demo_model, tmp_path):
    def make(workers: list[str] = (), automatic: bool = True):
        settings = Settings(
            n_ctx=2048,
            workers=[SavedWorker(w) for w in workers],
            reload_automatically=automatic,
        )
        head = Head(
            settings,
            tmp_path / "settings.json",
            state_dir=tmp_path / "head",
            watch=WatchSettings(interval_s=0.3),
        )
        win = MainWindow(head, demo_model, "demo")
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        return win

    made: list[MainWindow] = []
    yield make
    for win in made:
        win.close()
        win.controller.shutdown()


def wait_ready(qtbot, win, timeout=60_000) -> Ready:
    qtbot.waitUntil(lambda: isinstance(win.controller.state, Ready | Failed), timeout=timeout)
    assert isinstance(win.controller.state, Ready), win.controller.state
    qtbot.waitUntil(lambda: win.chat.send_button.isEnabled(), timeout=5000)
    return win.controller.state


def type_and_send(qtbot, win, text: str) -> None:
    win.chat.input.setPlainText(text)
    qtbot.keyClick(win.chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def test_send_streams_into_the_pane_and_stop_ends_it(qtbot, window):
    win = window()
    win.chat.params = {"temperature": 0, "max_tokens": 600}
    win.load()
    ready = wait_ready(qtbot, win)
    assert "CPU: layers 0-29 + output" in win.placement.text() == ready.placement_text

    readouts = []
    win.chat.ratesChanged.connect(lambda r: readouts.append(r))
    type_and_send(qtbot, win, "Tell me a long story about a dragon.")
    assert win.chat.busy and win.chat.stop_button.isEnabled()
    qtbot.waitUntil(lambda: len(win.chat.conversation.messages[-1].content) > 80, timeout=30_000)
    # the readout changes while streaming
    qtbot.waitUntil(
        lambda: len({round(r.generation_tps, 3) for r in readouts if r.generation_tps}) >= 2,
        timeout=10_000,
    )
    live = [r.generation_tps for r in readouts if r.generation_tps and not r.final]
    assert "generation" in win.throughput.text() and "tok/s" in win.throughput.text()

    qtbot.mouseClick(win.chat.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.chat.busy, timeout=10_000)
    answer = win.chat.conversation.messages[-1]
    assert answer.finish == "stopped"
    assert answer.content in win.chat.transcript.toPlainText()
    assert "[stopped]" in win.chat.transcript.toPlainText()
    assert live, "the readout showed live generation tok/s while streaming"
    # the final readout comes from llama.cpp's own timings
    assert win.throughput.rates.final

    # and the next question works
    type_and_send(qtbot, win, "Say OK.")
    qtbot.waitUntil(
        lambda: not win.chat.busy and bool(win.chat.conversation.messages[-1].finish),
        timeout=30_000,
    )
    assert win.chat.conversation.messages[-1].content


@pytest.mark.parametrize("automatic", [False, True], ids=["by-click", "by-itself"])
def test_worker_killed_mid_answer_keeps_the_conversation_and_reloads_without_it(
    qtbot, window, start_worker, automatic
):
    w1, w2 = start_worker(), start_worker()
    win = window([w1.endpoint, w2.endpoint], automatic=automatic)
    assert win.load_bar.automatic.isChecked() is automatic
    win.chat.params = {"temperature": 0, "max_tokens": 2000}
    qtbot.waitUntil(lambda: len(win.head.results) == 2, timeout=10_000)
    assert all(r.ok for r in win.head.results.values())
    # What loads is what the layer map shows. Its default, fastest-first, keeps this small
    # model on the CPU (loopback workers only cost speed); like a person who wants both
    # workers used, pick llama.cpp's default split there.
    qtbot.waitUntil(lambda: win.layer_map.result is not None, timeout=10_000)
    strategy = win.layer_map.controls.strategy
    strategy.setCurrentIndex(strategy.findData("proportional"))
    labels = [f"RPC {w1.endpoint}", f"RPC {w2.endpoint}"]
    qtbot.waitUntil(
        lambda: [d.label for d in win.layer_map.result.plan.devices] == labels, timeout=10_000
    )
    planned = win.layer_map.result.plan
    win.load()
    ready = wait_ready(qtbot, win)
    for w in (w1, w2):
        assert f"RPC {w.endpoint}" in ready.placement_text
    assert ready.placement.layer_devices == expected_layer_devices(planned, ready.placement.n_layer)

    type_and_send(qtbot, win, "Write a long poem about rivers.")
    qtbot.waitUntil(lambda: len(win.chat.conversation.messages[-1].content) > 40, timeout=30_000)
    states: list = []
    win.bridge.stateChanged.connect(states.append)
    w2.kill()
    qtbot.waitUntil(lambda: any(isinstance(s, Failed) for s in states), timeout=10_000)
    qtbot.waitUntil(lambda: not win.chat.busy, timeout=10_000)
    said = win.chat.conversation.messages[-1].content
    transcript = win.chat.transcript.toPlainText()
    assert "Write a long poem about rivers." in transcript and said in transcript
    lost = next(s for s in states if isinstance(s, Failed))
    assert lost.lost_workers == [w2.endpoint] and w2.endpoint in lost.message
    if not automatic:
        # the window hears of the failure through a queued signal: wait for what it shows
        qtbot.waitUntil(lambda: w2.endpoint in win.load_bar.message.text(), timeout=5000)
        assert win.load_bar.reload_button.isVisible()
        w1.wait_idle()
        qtbot.mouseClick(win.load_bar.reload_button, Qt.MouseButton.LeftButton)
    else:  # it says what it does, and does it without a click
        qtbot.waitUntil(lambda: "again without" in win.statusBar().currentMessage(), timeout=5000)
    after = states.index(lost)
    qtbot.waitUntil(lambda: any(isinstance(s, Loading) for s in states[after:]), timeout=10_000)
    ready = wait_ready(qtbot, win)
    assert w2.endpoint not in ready.placement_text and f"RPC {w1.endpoint}" in ready.placement_text
    assert [w.enabled for w in win.head.workers()] == [True, False]
    win.chat.params["max_tokens"] = 20
    type_and_send(qtbot, win, "Go on.")
    qtbot.waitUntil(
        lambda: not win.chat.busy and bool(win.chat.conversation.messages[-1].finish),
        timeout=30_000,
    )
    assert len(win.chat.conversation.messages) == 4  # nothing was lost


def test_a_typo_in_a_worker_address_is_explained_and_kept(qtbot, window):
    win = window()
    win.workers.address.setText("192.168.1.20:5OO52")
    qtbot.mouseClick(win.workers.add_button, Qt.MouseButton.LeftButton)
    assert win.workers.error.isVisible() and "not a number" in win.workers.error.text()
    assert win.workers.address.text() == "192.168.1.20:5OO52"
    assert win.workers.list.count() == 0
