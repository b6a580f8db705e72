"""The main window: it only arranges the panes and wires them to the engine controller."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QSplitter, QVBoxLayout, QWidget

from layerlab.core.engine.supervisor import EngineState, Failed, Ready, Stopped
from layerlab.core.load_plan import default_plan
from layerlab.core.settings import Settings
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.engine_controller import EngineController
from layerlab.ui.load_bar import LoadBar
from layerlab.ui.status.placement_label import PlacementLabel
from layerlab.ui.status.throughput_readout import ThroughputReadout
from layerlab.ui.workers.workers_panel import WorkersPanel


class MainWindow(QMainWindow):
    def __init__(self, controller: EngineController, settings: Settings, model_path: Path,
                 model_name: str, settings_path: Path | None = None):
        super().__init__()
        self.setWindowTitle("LayerLab")
        self.controller = controller
        self.settings = settings
        self._settings_path = settings_path
        self.model_path = model_path
        self.model_name = model_name

        self.chat = ChatPane()
        self.load_bar = LoadBar()
        self.workers = WorkersPanel()
        self.placement = PlacementLabel()
        self.throughput = ThroughputReadout()

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.load_bar)
        side_layout.addWidget(self.workers, 1)
        self.side_layout = side_layout  # the Devices panel and layer map join here

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.chat)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.setCentralWidget(split)
        self.statusBar().addWidget(self.placement, 1)
        self.statusBar().addPermanentWidget(self.throughput)
        self.resize(1200, 760)

        self.load_bar.set_model_name(model_name)
        self.workers.set_saved(settings.workers)

        controller.stateChanged.connect(self._on_state)
        self.load_bar.loadRequested.connect(self.load)
        self.load_bar.unloadRequested.connect(controller.unload)
        self.load_bar.reloadWithoutRequested.connect(self._reload_without)
        self.load_bar.modelChosen.connect(self._choose_model)
        self.chat.ratesChanged.connect(self.throughput.show_rates)
        self.workers.workersChanged.connect(self._save_settings)
        for problem in settings.problems:
            self.statusBar().showMessage(problem, 10000)

    def load(self) -> None:
        counts = {}
        for address in self.workers.enabled_addresses():
            result = self.workers.results.get(address)
            counts[address] = len(result.devices) if result and result.ok else 1
        plan = default_plan(str(self.model_path), counts, self.settings.n_ctx, self.model_name)
        self.controller.load(plan)

    def _reload_without(self) -> None:
        state = self.controller.state
        if isinstance(state, Failed):
            lost = set(state.lost_workers)
            self.workers.set_saved([w if w.address not in lost else
                                    type(w)(w.address, False) for w in self.workers.saved()])
            self._save_settings()
        self.controller.reload_without_lost()

    def _choose_model(self, path: str) -> None:
        self.model_path = Path(path)
        self.model_name = Path(path).name
        self.settings.model_path = path
        self.load_bar.set_model_name(self.model_name)
        self._save_settings()
        self.load()

    def _on_state(self, state: EngineState) -> None:
        self.load_bar.show_state(state)
        self.placement.show_state(state)
        if isinstance(state, Ready):
            self.chat.set_client(self.controller.supervisor.client())
        elif isinstance(state, Failed | Stopped):
            self.chat.set_client(None)
        if isinstance(state, Failed) and state.lost_workers:
            self.workers.check_all()  # show the lost worker as it is now

    def _save_settings(self) -> None:
        self.settings.workers = self.workers.saved()
        try:
            self.settings.save(self._settings_path)
        except OSError as e:
            self.statusBar().showMessage(f"Could not save settings: {e}", 10000)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._save_settings()
        self.chat.shutdown()
        self.workers.shutdown()
        super().closeEvent(event)
