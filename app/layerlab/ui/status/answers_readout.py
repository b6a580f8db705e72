"""How many answers the engine is writing and how many wait: "2 answering · 3 waiting"."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QWidget

if TYPE_CHECKING:
    from layerlab.core.head.head import Head

POLL_MS = 500  # the same pace as the supervisor's own watch


def answers_text(running: int, waiting: int) -> str:
    """The toolbar's words; "" while nothing is answered (the label then takes no room)."""
    if not running and not waiting:
        return ""
    text = f"{running} answering"
    return text + (f" · {waiting} waiting" if waiting else "")


class _Relay(QObject):
    counted = Signal(int, int, int)  # running, waiting, parallel


class AnswersReadout(QLabel):
    """A small toolbar label fed by the loaded engine's /layerlab/status.

    The status is asked off the GUI thread (an HTTP call, however short, must never block
    the window) and at most one ask is in flight; the answer comes back through a signal.
    """

    def __init__(self, head: Head, parent: QWidget | None = None, poll_ms: int = POLL_MS):
        super().__init__(parent)
        self.head = head
        self.running = self.waiting = 0
        self.parallel = 1
        self._relay = _Relay(self)
        self._relay.counted.connect(self.show_counts)
        self._asking = False
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._ask)
        self._timer.start()
        self.show_counts(0, 0, 1)

    def show_counts(self, running: int, waiting: int, parallel: int) -> None:
        self.running, self.waiting, self.parallel = running, waiting, parallel
        self.setText(answers_text(running, waiting))
        self.setToolTip(
            f"The model answers up to {parallel} requests at once (the chat window's first); "
            "more wait their turn."
        )

    def _ask(self) -> None:
        if self._asking:
            return
        client = self.head.supervisor.client()
        if client is None:
            if self.running or self.waiting:
                self.show_counts(0, 0, self.parallel)
            return
        self._asking = True

        def ask() -> None:
            try:
                st = client.status(timeout=1.0)
                self._relay.counted.emit(
                    int(st.get("running", 0)), int(st.get("waiting", 0)), int(st.get("parallel", 1))
                )
            except Exception:  # not answering right now: the supervisor says why elsewhere
                pass
            finally:
                self._asking = False

        threading.Thread(target=ask, name="answers-readout", daemon=True).start()

    def closeEvent(self, event) -> None:
        self._timer.stop()
        super().closeEvent(event)
