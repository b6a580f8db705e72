"""Which devices hold which layers, in one line: 'RPC 10.0.0.5:50052: layers 0-9 · CPU: ...'."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from layerlab.core.engine.supervisor import EngineState, Failed, Loading, Ready, Stopped


class PlacementLabel(QLabel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__("No model loaded", parent)
        self.setWordWrap(True)

    def show_state(self, state: EngineState) -> None:
        if isinstance(state, Ready):
            self.setText(state.placement_text)
        elif isinstance(state, Loading):
            self.setText("Loading…")
        elif isinstance(state, Failed):
            self.setText("Not loaded")
        elif isinstance(state, Stopped):
            self.setText("No model loaded")
