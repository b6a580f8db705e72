"""The toolbar over the conversation: the loaded model, where its layers run (one line), live
tok/s, and the switch that shows or hides the cluster panel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolBar, QWidget

from layerlab.core.engine.supervisor import EngineState, Ready
from layerlab.ui.status.placement_label import PlacementLabel
from layerlab.ui.status.throughput_readout import ThroughputReadout

PAGES = [
    ("chat", "Chat", "Your conversations with the loaded model"),
    ("models", "Models", "Find models on Hugging Face, download them, and your library"),
    ("bench", "Bench", "Measure splits of this model side by side and apply the fastest"),
]


class ModelToolbar(QToolBar):
    clusterToggled = Signal(bool)
    pageChosen = Signal(str)  # "chat", "models", ...

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.setMovable(False)
        self.model = QLabel()
        self.model.setStyleSheet("font-weight: bold; padding: 0 8px")
        self.placement = PlacementLabel()
        self.placement.setWordWrap(False)
        # the line takes the toolbar's free room and is cut at its end (the tooltip has it all)
        self.placement.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.placement.setMinimumWidth(80)
        self.throughput = ThroughputReadout()
        self.throughput.setStyleSheet("padding: 0 8px")
        self.cluster = QAction("Cluster", self)
        self.cluster.setCheckable(True)
        self.cluster.setChecked(True)
        self.cluster.setToolTip("Show or hide the cluster: model, workers, devices, layer map")
        self.pages = QActionGroup(self)
        self.pages.setExclusive(True)
        for key, text, tip in PAGES:
            action = QAction(text, self)
            action.setCheckable(True)
            action.setToolTip(tip)
            action.setData(key)
            self.pages.addAction(action)
            self.addAction(action)
        self.pages.actions()[0].setChecked(True)
        self.pages.triggered.connect(lambda a: self.pageChosen.emit(a.data()))
        self.addSeparator()
        self.addWidget(self.model)
        self.addWidget(self.placement)
        self.addWidget(self.throughput)
        self.addAction(self.cluster)
        self.cluster.toggled.connect(self.clusterToggled)

    def choose_page(self, key: str) -> None:
        for action in self.pages.actions():
            action.setChecked(action.data() == key)

    def set_model_name(self, name: str) -> None:
        self.model.setText(name)

    def show_state(self, state: EngineState) -> None:
        self.placement.show_state(state)
        self.placement.setToolTip(self.placement.text())
        if isinstance(state, Ready) and state.model:
            self.model.setText(self.model.text() or state.model)
