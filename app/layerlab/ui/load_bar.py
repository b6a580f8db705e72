"""Load / Unload, the load progress, and what went wrong with one-click recovery."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.engine.supervisor import EngineState, Failed, Loading, Ready, Stopped


class LoadBar(QGroupBox):
    loadRequested = Signal()
    unloadRequested = Signal()
    reloadWithoutRequested = Signal()
    useAgainRequested = Signal(str)  # the address of a worker that is back
    automaticChanged = Signal(bool)
    modelChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.open_button = QPushButton("Open GGUF…")
        self.load_button = QPushButton("Load")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        self.reload_button = QPushButton("Reload without it")
        self.reload_button.hide()
        self.use_again_button = QPushButton()
        self.use_again_button.hide()
        self._back = ""  # the worker the button offers
        self.automatic = QCheckBox("Load again by itself after a lost worker or engine")
        self.automatic.setToolTip(
            "On: a lost worker is left out and the model loads again at once; an engine that "
            "stopped is started again a few times. Off: LayerLab waits for your click."
        )

        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addStretch(1)
        row.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.reload_button)
        layout.addWidget(self.use_again_button)
        layout.addWidget(self.automatic)

        self._loaded = False
        self.load_button.clicked.connect(self._toggle)
        self.reload_button.clicked.connect(self.reloadWithoutRequested)
        self.open_button.clicked.connect(self._choose_file)
        self.use_again_button.clicked.connect(lambda: self.useAgainRequested.emit(self._back))
        self.automatic.toggled.connect(self.automaticChanged)

    def set_automatic(self, on: bool) -> None:
        self.automatic.blockSignals(True)
        self.automatic.setChecked(on)
        self.automatic.blockSignals(False)

    def offer_worker(self, address: str, label: str) -> None:
        """A lost worker answers steadily again: one click loads with it."""
        self._back = address
        self.use_again_button.setText(f"Use {label} again")
        self.use_again_button.show()

    def set_model_name(self, name: str) -> None:
        self.model_label.setText(name)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if path:
            self.modelChosen.emit(path)

    def _toggle(self) -> None:
        (self.unloadRequested if self._loaded else self.loadRequested).emit()

    def show_state(self, state: EngineState) -> None:
        busy = isinstance(state, Loading)
        self._loaded = isinstance(state, Ready | Loading)
        self.load_button.setText("Unload" if self._loaded else "Load")
        self.open_button.setEnabled(not busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(int(state.fraction * 1000))
            self.progress.setFormat(state.stage)
        self.reload_button.hide()
        if not isinstance(state, Failed | Ready):
            self.use_again_button.hide()
        if isinstance(state, Failed):
            self._say(state.message, error=True)
            if state.can_reload_without:
                self.reload_button.setText(f"Reload without {', '.join(state.lost_workers)}")
                self.reload_button.show()
        elif isinstance(state, Loading):
            self._say(f"{state.stage.capitalize()}…")
        elif isinstance(state, Ready):
            self._say(f"Ready · context {state.plan.n_ctx} tokens · loaded in {state.load_s:.1f} s")
        elif isinstance(state, Stopped):
            self._say(state.message)

    def say(self, text: str) -> None:
        """A passing word that is not an engine state (e.g. waiting for the plan)."""
        self._say(text)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #a33; font-weight: bold" if error else "")
        self.message.setVisible(bool(text))
