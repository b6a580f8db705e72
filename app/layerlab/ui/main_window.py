"""The main window: it only arranges the panes and wires them to the engine controller."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QSplitter, QVBoxLayout, QWidget

from layerlab.core.engine.supervisor import EngineState, Failed, Ready, Stopped
from layerlab.core.load_plan import LoadPlan, default_plan
from layerlab.core.settings import Settings
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.cluster.share_process import ShareProcess
from layerlab.ui.cluster.share_switch import ShareSwitch
from layerlab.ui.devices.panel import DevicesPanel
from layerlab.ui.engine_controller import EngineController
from layerlab.ui.layer_map.panel import LayerMapPanel
from layerlab.ui.load_bar import LoadBar
from layerlab.ui.status.placement_label import PlacementLabel
from layerlab.ui.status.throughput_readout import ThroughputReadout
from layerlab.ui.wiring.engine_views import LoadedModelView
from layerlab.ui.wiring.plan_feed import PlanFeeder
from layerlab.ui.wiring.side_tabs import SideTabs
from layerlab.ui.workers.workers_panel import WorkersPanel


class MainWindow(QMainWindow):
    def __init__(
        self,
        controller: EngineController,
        settings: Settings,
        model_path: Path,
        model_name: str,
        settings_path: Path | None = None,
    ):
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
        self.devices = DevicesPanel(auto_start=False)  # the tabs start it when shown
        self.layer_map = LayerMapPanel()
        self.share = ShareSwitch(ShareProcess(parent=self))
        self.tabs = SideTabs(self.workers, self.devices, self.layer_map, self.share)
        self.placement = PlacementLabel()
        self.throughput = ThroughputReadout()
        self.plan_feed = PlanFeeder(self.layer_map, self.workers, self)
        self.loaded_view = LoadedModelView(self.devices, self.layer_map, self)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.load_bar)
        side_layout.addWidget(self.tabs, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.chat)
        split.addWidget(side)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.setCentralWidget(split)
        self.statusBar().addWidget(self.placement, 1)
        self.statusBar().addPermanentWidget(self.throughput)
        self.resize(1360, 860)
        # the layer map's rows want ~800 px; the chat keeps a readable column beside them
        split.setSizes([540, 820])

        self.load_bar.set_model_name(model_name)
        self.workers.set_saved(settings.workers)
        self.workers.attach(controller.supervisor)  # paired workers load through their links
        self.devices.set_workers(self.workers.enabled_addresses())
        self.layer_map.model.update(n_ctx=settings.n_ctx)  # until the person changes it
        self.plan_feed.probe_this_machine()
        self.plan_feed.set_model(model_path)

        controller.stateChanged.connect(self._on_state)
        self.load_bar.loadRequested.connect(self.load)
        self.load_bar.unloadRequested.connect(controller.unload)
        self.load_bar.reloadWithoutRequested.connect(self._reload_without)
        self.load_bar.modelChosen.connect(self._choose_model)
        self.chat.ratesChanged.connect(self.throughput.show_rates)
        self.chat.answerStarted.connect(self.workers.follow_answer)  # wait per token
        self.workers.workersChanged.connect(self._save_settings)
        self.workers.workersChanged.connect(
            lambda: self.devices.set_workers(self.workers.enabled_addresses())
        )
        for problem in settings.problems:
            self.statusBar().showMessage(problem, 10000)

    def load(self) -> None:
        """Load what the layer map shows (once it knows the model, this machine and the
        workers); llama.cpp's default split only when the map has no plan."""
        self.load_bar.say("Waiting for the model's plan and the workers' answers…")
        self.plan_feed.request_plan(self._load_plan)

    def _load_plan(self, plan: LoadPlan | None) -> None:
        if plan is None:
            counts = {}
            for address in self.workers.enabled_addresses():
                result = self.workers.results.get(address)
                counts[address] = len(result.devices) if result and result.ok else 1
            plan = default_plan(str(self.model_path), counts, self.settings.n_ctx)
        plan = LoadPlan.from_dict({**plan.to_dict(), "model_name": self.model_name})
        if plan.n_ctx != self.settings.n_ctx:
            self.settings.n_ctx = plan.n_ctx  # the context the person chose is kept
            self._save_settings()
        self.controller.load(plan)

    def _reload_without(self) -> None:
        state = self.controller.state
        if isinstance(state, Failed):
            lost = set(state.lost_workers)
            self.workers.set_saved(
                [
                    w if w.address not in lost else type(w)(w.address, False)
                    for w in self.workers.saved()
                ]
            )
            self._save_settings()
        self.controller.reload_without_lost()

    def _choose_model(self, path: str) -> None:
        self.model_path = Path(path)
        self.model_name = Path(path).name
        self.settings.model_path = path
        self.load_bar.set_model_name(self.model_name)
        self._save_settings()
        self.plan_feed.set_model(path)
        self.load()  # waits for the new model's plan

    def _on_state(self, state: EngineState) -> None:
        self.load_bar.show_state(state)
        self.placement.show_state(state)
        self.loaded_view.show_state(state)
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
        self.plan_feed.close()
        self.devices.stop_sampling()
        self.share.process.stop()
        super().closeEvent(event)
