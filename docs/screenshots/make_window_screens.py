"""Screenshots of the whole window: the demo model loaded over two loopback workers as the
layer map planned it: an answer mid-stream, one picture per tab of the right-hand column,
and the message after a worker is lost mid-answer.

Run under Xvfb from the repository root:
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_window_screens.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

from layerlab.core.demo_model import DEMO_NAME, demo_model_path
from layerlab.core.engine.supervisor import Failed, Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.settings import SavedWorker, Settings
from layerlab.ui.main_window import MainWindow

OUT = Path(__file__).parent


def pump_until(app, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        app.processEvents()
        time.sleep(0.01)


def pump(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    app = QApplication(sys.argv)  # before tests.conftest, which defaults Qt to offscreen
    from tests.conftest import WorkerProcess, free_port_pair

    tmp = Path(tempfile.mkdtemp())
    w1, w2 = WorkerProcess(free_port_pair(), tmp), WorkerProcess(free_port_pair(), tmp)
    settings = Settings(
        n_ctx=2048,
        workers=[SavedWorker(w1.endpoint), SavedWorker(w2.endpoint)],
        reload_automatically=False,  # the lost-worker screen shows the one-click reload
    )
    head = Head(
        settings, tmp / "s.json", state_dir=tmp / "head", watch=WatchSettings(interval_s=0.3)
    )
    win = MainWindow(head, demo_model_path(), DEMO_NAME)
    controller = head
    win.show()
    try:
        pump_until(app, lambda: len(win.head.results) == 2 and win.plan_feed.settled)
        # llama.cpp's default split, so both workers hold layers (fastest-first would keep
        # this small model on the CPU and say why in the map's notes)
        combo = win.layer_map.controls.strategy
        combo.setCurrentIndex(combo.findData("proportional"))
        pump_until(app, lambda: len(win.layer_map.result.plan.devices) == 2)
        win.load()
        pump_until(
            app, lambda: isinstance(controller.state, Ready) and win.chat.send_button.isEnabled()
        )
        win.chat.params = {"temperature": 0, "max_tokens": 200}
        win.chat.input.setPlainText("Name three rivers in Europe, one line each.")
        win.chat.send()
        pump_until(app, lambda: len(win.chat.conversation.messages[-1].content) > 120)
        win.grab().save(str(OUT / "chat-mid-stream.png"))
        pump_until(
            app, lambda: not win.chat.busy and bool(win.chat.conversation.messages[-1].finish)
        )
        win.tabs.setCurrentWidget(win.layer_map)
        pump(app, 0.5)
        win.grab().save(str(OUT / "window-layer-map.png"))
        win.tabs.setCurrentWidget(win.devices)
        pump_until(
            app,
            lambda: all(win.devices.gauge_for(f"RPC {w.endpoint}") for w in (w1, w2)),
            timeout=30,
        )
        pump(app, 3.0)  # a few samples for the history lines
        win.grab().save(str(OUT / "window-devices.png"))
        win.tabs.setCurrentWidget(win.workers)
        pump(app, 0.3)
        win.grab().save(str(OUT / "window-workers.png"))
        # a worker lost mid-answer: the conversation stays, the message names it
        win.chat.params = {"temperature": 0, "max_tokens": 2000}
        win.chat.input.setPlainText("Now write a long poem about the sea.")
        win.chat.send()
        pump_until(app, lambda: len(win.chat.conversation.messages[-1].content) > 100)
        w2.kill()
        pump_until(app, lambda: isinstance(controller.state, Failed) and not win.chat.busy)
        pump(app, 2.5)  # the Workers list re-asks and marks the lost one
        win.grab().save(str(OUT / "chat-worker-lost.png"))
    finally:
        win.close()
        head.close()
        w1.stop()
        w2.stop()


if __name__ == "__main__":
    main()
