"""One device's row: its memory bar (weights, KV, compute against free memory and the
reserve), the numbers, and the person's controls (ratio, reserve, exclude)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QSizePolicy,
    QWidget,
)

from layerlab.core.planner.devices import PlanDevice
from layerlab.core.planner.planner import DevicePlan
from layerlab.core.units import GiB, format_bytes
from layerlab.ui.layer_map import colors


class MemoryBar(QWidget):
    """Stacked bar: weights | KV | compute, scaled to the device's free memory."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(220, 18)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.parts: list[tuple[int, QColor]] = []
        self.free = 1
        self.reserve = 0

    def set_values(self, weights: int, kv: int, compute: int, free: int, reserve: int) -> None:
        self.parts = [(weights, colors.WEIGHTS), (kv, colors.KV), (compute, colors.COMPUTE)]
        self.free = max(free, 1)
        self.reserve = reserve
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        r = QRectF(0, 2, self.width() - 1, self.height() - 4)
        p.fillRect(r, QColor("#f1f2f6"))
        scale = r.width() / max(self.free, sum(n for n, _ in self.parts), 1)
        if self.reserve:
            w = self.reserve * scale
            p.fillRect(QRectF(r.right() - w, r.top(), w, r.height()), colors.RESERVE)
        x = r.left()
        for n, color in self.parts:
            w = n * scale
            p.fillRect(QRectF(x, r.top(), w, r.height()), color)
            x += w
        if x > r.left() + self.free * scale + 0.5:
            p.fillRect(
                QRectF(
                    r.left() + self.free * scale,
                    r.top(),
                    x - r.left() - self.free * scale,
                    r.height(),
                ),
                colors.OVER,
            )
        p.setPen(QColor("#57606f"))
        p.drawRect(QRectF(r.left(), r.top(), self.free * scale, r.height()))
        p.end()


class DeviceRow(QWidget):
    ratioEdited = Signal(str, float)
    reserveEdited = Signal(str, object)  # bytes: may exceed a C int
    excludeToggled = Signal(str, bool)

    def __init__(self, device: PlanDevice, color_index: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = device.label
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 2, 4, 2)
        self.swatch = QLabel()
        self.swatch.setFixedSize(12, 12)
        self.swatch.setStyleSheet(
            f"background: {colors.device_color(color_index).name()}; border-radius: 2px;"
        )
        self.title = QLabel(f"<b>{device.label}</b> · {device.name}")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.layers = QLabel("-")
        self.bar = MemoryBar()
        self.numbers = QLabel("")
        self.numbers.setMinimumWidth(400)
        self.verdict = QLabel("")
        self.actual = QLabel("")
        self.actual.setStyleSheet("color: #57606f;")
        self.ratio = QDoubleSpinBox()
        self.ratio.setRange(0, 1000)
        self.ratio.setDecimals(1)
        self.ratio.setPrefix("ratio ")
        self.ratio.setToolTip("This device's share of the layers (typing one switches to manual)")
        self.reserve = QDoubleSpinBox()
        self.reserve.setRange(0, 1024)
        self.reserve.setDecimals(1)
        self.reserve.setSingleStep(0.5)
        self.reserve.setPrefix("keep ")
        self.reserve.setSuffix(" GiB free")
        self.exclude = QCheckBox("use")
        self.exclude.setChecked(not device.excluded)
        if device.is_host:
            self.ratio.setEnabled(False)
            self.exclude.setEnabled(False)
            self.exclude.setToolTip("The host always holds the token embeddings")
        grid.addWidget(self.swatch, 0, 0)
        grid.addWidget(self.title, 0, 1, 1, 2)
        grid.addWidget(self.layers, 0, 3)
        grid.addWidget(self.verdict, 0, 4)
        grid.addWidget(self.bar, 1, 1, 1, 2)
        grid.addWidget(self.numbers, 1, 3, 1, 2)
        grid.addWidget(self.exclude, 2, 1)
        grid.addWidget(self.ratio, 2, 2)
        grid.addWidget(self.reserve, 2, 3)
        grid.addWidget(self.actual, 2, 4)
        grid.setColumnStretch(2, 1)
        self.ratio.editingFinished.connect(self._ratio_done)
        self.reserve.editingFinished.connect(self._reserve_done)
        self.exclude.toggled.connect(self._use_toggled)

    def _ratio_done(self) -> None:
        self.ratioEdited.emit(self.label, self.ratio.value())

    def _reserve_done(self) -> None:
        self.reserveEdited.emit(self.label, int(self.reserve.value() * GiB))

    def _use_toggled(self, on: bool) -> None:
        self.excludeToggled.emit(self.label, not on)

    def show_plan(self, row: DevicePlan | None, device: PlanDevice) -> None:
        """Fill from the plan; `row` is None when the device holds nothing."""
        for w in (self.ratio, self.reserve):
            w.blockSignals(True)
        self.reserve.setValue(device.reserve / GiB)
        if row is None:
            self.layers.setText("no layers")
            self.bar.set_values(0, 0, 0, device.free, device.reserve)
            self.numbers.setText(f"{format_bytes(device.free)} free")
            self.verdict.setText("excluded" if device.excluded else "unused")
            self.ratio.setValue(0)
        else:
            m = row.memory
            self.layers.setText(
                "token embeddings only"
                if device.is_host and row.n_units == 0
                else f"layers {row.layers_text}"
            )
            self.bar.set_values(m.weights, m.kv, m.compute + m.output, device.free, device.reserve)
            self.numbers.setText(
                f"weights {format_bytes(m.weights)} · KV {format_bytes(m.kv)} · compute "
                f"{format_bytes(m.compute + m.output)} · {format_bytes(row.free_after)} left"
            )
            color = {"fits": "#10ac84", "fits with CPU offload": "#ff9f43"}.get(
                row.verdict, "#ee5253"
            )
            self.verdict.setText(f"<span style='color:{color}'><b>{row.verdict}</b></span>")
            if not device.is_host:
                self.ratio.setValue(row.n_units)
        for w in (self.ratio, self.reserve):
            w.blockSignals(False)

    def show_actual(self, forecast: int, actual: int | None) -> None:
        if actual is None:
            self.actual.setText("")
            return
        err = forecast - actual
        pct = 100.0 * err / actual if actual else 0.0
        self.actual.setText(
            f"forecast {format_bytes(forecast)} · actual {format_bytes(actual)}"
            f" · error {'+' if err >= 0 else '-'}{format_bytes(abs(err))} "
            f"({pct:+.1f}%)"
        )
