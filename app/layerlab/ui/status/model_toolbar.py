"""The toolbar over the conversation: the loaded model, where its layers run (one line), live
tok/s, and the switch that shows or hides the cluster panel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolBar, QWidget

from layerlab.core.engine.supervisor import EngineState, Ready
from layerlab.ui.status.placement_label import PlacementLabel
from layerlab.ui.status.throughput_readout import ThroughputReadout


class ModelToolbar(QToolBar):
    clusterToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.setMovable(False)
        self.model = QLabel()
        self.model.setStyleSheet("font-weight: bold; padding: 0 8px")
        self.placement = PlacementLabel()
        self.placement.setWordWrap(False)
        self.placement.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.throughput = ThroughputReadout()
        self.throughput.setStyleSheet("padding: 0 8px")
        self.cluster = QAction("Cluster", self)
        self.cluster.setCheckable(True)
        self.cluster.setChecked(True)
        self.cluster.setToolTip("Show or hide the cluster: model, workers, devices, layer map")
        self.addWidget(self.model)
        self.addWidget(self.placement)
        self.addWidget(self.throughput)
        self.addAction(self.cluster)
        self.cluster.toggled.connect(self.clusterToggled)

    def set_model_name(self, name: str) -> None:
        self.model.setText(name)

    def show_state(self, state: EngineState) -> None:
        self.placement.show_state(state)
        self.placement.setToolTip(self.placement.text())
        if isinstance(state, Ready) and state.model:
            self.model.setText(self.model.text() or state.model)
