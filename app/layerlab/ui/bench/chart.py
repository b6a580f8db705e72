"""A bar per measured configuration: generation tok/s, with the forecast as a tick."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from layerlab.core.bench.results import BenchRun

BAR = QColor("#3b82f6")
BEST = QColor("#16a34a")
FORECAST = QColor("#111827")


class BenchChart(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._rows: list[tuple[str, float, float | None]] = []
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def show_run(self, run: BenchRun | None) -> None:
        self._rows = [
            (r.name, r.tg[0] or 0.0, r.config.predicted_tg) for r in (run.measured if run else [])
        ]
        self.setMinimumHeight(max(120, 28 * len(self._rows) + 30))
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if not self._rows:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No measurements yet.")
            return
        label_w = 220
        top = 20
        width = max(10, self.width() - label_w - 80)
        peak = max(max(v, f or 0.0) for _, v, f in self._rows) or 1.0
        best = max(v for _, v, _ in self._rows)
        p.drawText(label_w, 14, "generation tok/s (tick: forecast)")
        for i, (name, value, forecast) in enumerate(self._rows):
            y = top + i * 28
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(4, y, label_w - 8, 22), Qt.AlignmentFlag.AlignVCenter, name)
            w = width * value / peak
            p.fillRect(QRectF(label_w, y + 3, w, 16), BEST if value == best else BAR)
            p.drawText(
                QRectF(label_w + w + 6, y, 70, 22), Qt.AlignmentFlag.AlignVCenter, f"{value:.1f}"
            )
            if forecast:
                x = label_w + width * forecast / peak
                p.setPen(QPen(FORECAST, 2))
                p.drawLine(int(x), y, int(x), y + 22)
        p.end()
