"""Qt adapter around the core EngineSupervisor: its states arrive as a signal on the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from layerlab.core.engine.supervisor import EngineState, EngineSupervisor, WatchSettings
from layerlab.core.load_plan import LoadPlan


class EngineController(QObject):
    stateChanged = Signal(object)  # EngineState, always delivered on the GUI thread

    def __init__(self, parent: QObject | None = None, watch: WatchSettings | None = None):
        super().__init__(parent)
        # The supervisor calls back from its own threads; emitting a signal from there is
        # queued to this object's (the GUI) thread by Qt.
        self.supervisor = EngineSupervisor(on_state=self.stateChanged.emit, watch=watch)

    @property
    def state(self) -> EngineState:
        return self.supervisor.state

    def load(self, plan: LoadPlan) -> None:
        self.supervisor.start(plan)  # returns at once; work happens on its threads

    def unload(self) -> None:
        # terminate() + wait can take a moment; never on the GUI thread.
        import threading

        threading.Thread(target=self.supervisor.stop, name="engine-stop", daemon=True).start()

    def reload_without_lost(self) -> None:
        self.supervisor.reload_without_lost()

    def shutdown(self) -> None:
        """At exit: stop the engine and wait for it (the window is already gone)."""
        self.supervisor.stop(quiet=True)
