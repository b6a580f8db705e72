"""Screenshots of the chat window: mid-stream, and after a worker was lost.

Run under Xvfb from the repository root:
    xvfb-run -a .venv/bin/python docs/screenshots/make_chat_screens.py
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
from layerlab.core.settings import SavedWorker, Settings
from layerlab.ui.engine_controller import EngineController
from layerlab.ui.main_window import MainWindow

OUT = Path(__file__).parent


def pump_until(app, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    app = QApplication(sys.argv)  # before tests.conftest, which defaults Qt to offscreen
    from tests.conftest import WorkerProcess, free_port_pair

    tmp = Path(tempfile.mkdtemp())
    w1, w2 = WorkerProcess(free_port_pair(), tmp), WorkerProcess(free_port_pair(), tmp)
    settings = Settings(n_ctx=2048, workers=[SavedWorker(w1.endpoint), SavedWorker(w2.endpoint)])
    controller = EngineController(watch=WatchSettings(interval_s=0.3))
    win = MainWindow(controller, settings, demo_model_path(), DEMO_NAME, tmp / "s.json")
    win.show()
    try:
        pump_until(app, lambda: len(win.workers.results) == 2)
        win.load()
        pump_until(app, lambda: isinstance(controller.state, Ready)
                   and win.chat.send_button.isEnabled())
        win.chat.params = {"temperature": 0, "max_tokens": 2000}
        win.chat.input.setPlainText("Write a short poem about the sea.")
        win.chat.send()
        pump_until(app, lambda: len(win.chat.conversation.messages[-1].content) > 160)
        win.grab().save(str(OUT / "chat-mid-stream.png"))
        w2.kill()
        pump_until(app, lambda: isinstance(controller.state, Failed) and not win.chat.busy)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)
        win.grab().save(str(OUT / "chat-worker-lost.png"))
    finally:
        win.close()
        controller.shutdown()
        w1.stop()
        w2.stop()


if __name__ == "__main__":
    main()
