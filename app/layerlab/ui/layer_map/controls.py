"""The plan's knobs: strategy, context size, answers at once, KV cache type; and the one-line
summary."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

STRATEGY_NAMES = {
    "fastest": "Fastest first",
    "proportional": "llama.cpp default",
    "manual": "Manual",
}


class PlanControls(QWidget):
    threadsChanged = Signal(object)  # CPU compute threads; None: what was measured best here
    strategyChanged = Signal(str)
    contextChanged = Signal(int)
    cacheTypeChanged = Signal(str)
    parallelChanged = Signal(int)  # answers decoded together (LoadPlan.parallel)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 4, 4, 4)
        self.strategy = QComboBox()
        for key, text in STRATEGY_NAMES.items():
            self.strategy.addItem(text, key)
        self.ctx = QSpinBox()
        self.ctx.setRange(256, 1 << 20)
        self.ctx.setSingleStep(1024)
        self.ctx.setValue(4096)
        self.ctx.setSuffix(" tokens")
        self.ctx.setKeyboardTracking(False)  # re-plan on Enter / arrows, not per keystroke
        self.parallel = QSpinBox()
        self.parallel.setRange(1, 16)
        self.parallel.setValue(1)
        self.parallel.setKeyboardTracking(False)
        self.parallel.setToolTip(
            "How many requests the model answers together. Each one gets the whole context, "
            "so the KV cache grows with every answer added."
        )
        self.cache = QComboBox()
        for t in ("f16", "q8_0", "q4_0"):
            self.cache.addItem(t, t)
        row.addWidget(QLabel("Strategy"))
        row.addWidget(self.strategy)
        row.addWidget(QLabel("Context"))
        row.addWidget(self.ctx)
        row.addWidget(QLabel("Answers at once"))
        row.addWidget(self.parallel)
        row.addWidget(QLabel("KV cache"))
        row.addWidget(self.cache)
        self._add_threads(row)
        row.addStretch(1)
        self.strategy.currentIndexChanged.connect(
            lambda _: self.strategyChanged.emit(self.strategy.currentData())
        )
        self.ctx.valueChanged.connect(self.contextChanged.emit)
        self.parallel.valueChanged.connect(self.parallelChanged.emit)
        self.cache.currentIndexChanged.connect(
            lambda _: self.cacheTypeChanged.emit(self.cache.currentData())
        )

    def show_values(
        self, strategy: str, n_ctx: int, cache: str, parallel: int | None = None
    ) -> None:
        for w in (self.strategy, self.ctx, self.cache, self.parallel):
            w.blockSignals(True)
        self.strategy.setCurrentIndex(max(0, self.strategy.findData(strategy)))
        self.ctx.setValue(n_ctx)
        self.cache.setCurrentIndex(max(0, self.cache.findData(cache)))
        if parallel is not None:
            self.parallel.setValue(parallel)
        for w in (self.strategy, self.ctx, self.cache, self.parallel):
            w.blockSignals(False)

    def _add_threads(self, row: QHBoxLayout) -> None:
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("auto")  # 0: the count measured best on this machine
        self.threads.setKeyboardTracking(False)
        self.threads.setToolTip(
            "CPU threads that compute the layers kept on this machine. Auto uses the count a "
            "bench measured fastest here (else llama.cpp's default, half the cores)."
        )
        row.addWidget(QLabel("CPU threads"))
        row.addWidget(self.threads)
        self.threads.valueChanged.connect(lambda n: self.threadsChanged.emit(n or None))

    def show_threads(self, n_threads: int | None) -> None:
        self.threads.blockSignals(True)
        self.threads.setValue(n_threads or 0)
        self.threads.blockSignals(False)
