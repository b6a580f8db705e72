"""The thin Qt adapter on the head: the head's events arrive as signals on the GUI thread.

The head calls back from its own threads; emitting a signal of this GUI-thread object from
there is queued to the GUI thread by Qt. Every action is a call into the head, which returns
at once (starting or stopping an engine runs on the head's lane, never here).
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from layerlab.core.engine.supervisor import EngineState
from layerlab.core.head import (
    EngineChanged,
    FoundChanged,
    Head,
    HeadEvent,
    Notice,
    WorkerBack,
    WorkersChanged,
    WorkerUpdated,
)
from layerlab.core.load_plan import LoadPlan


class HeadBridge(QObject):
    stateChanged = Signal(object)  # EngineState
    workersChanged = Signal()  # the person's list changed
    workerUpdated = Signal(str)  # one worker's answer, link or readings changed
    foundChanged = Signal(object)  # FoundChanged
    workerBack = Signal(object)  # WorkerBack: offer "Use X again"
    notice = Signal(str)

    def __init__(self, head: Head, parent: QObject | None = None):
        super().__init__(parent)
        self.head = head
        self._unsubscribe = head.subscribe(self._event)

    def _event(self, event: HeadEvent) -> None:
        match event:
            case EngineChanged(state):
                self.stateChanged.emit(state)
            case WorkersChanged():
                self.workersChanged.emit()
            case WorkerUpdated(address):
                self.workerUpdated.emit(address)
            case FoundChanged():
                self.foundChanged.emit(event)
            case WorkerBack():
                self.workerBack.emit(event)
            case Notice(text):
                self.notice.emit(text)

    # -- what views call (all return at once) -------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self.head.state

    @property
    def supervisor(self):
        return self.head.supervisor

    def load(self, plan: LoadPlan) -> None:
        self.head.load(plan)

    def unload(self) -> None:
        self.head.unload()

    def reload_without_lost(self) -> None:
        self.head.reload_without_lost()

    def shutdown(self, wait: bool = True) -> None:
        """Stop everything the head runs. wait=False: from the GUI thread (in a thread)."""
        self._unsubscribe()
        if wait:
            self.head.close()
        else:
            threading.Thread(target=self.head.close, name="head-close", daemon=True).start()
