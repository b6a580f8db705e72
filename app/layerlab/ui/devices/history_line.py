"""HistoryLine: the last minutes of a device's memory use (and utilisation), drawn small."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPointF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

WINDOW_S = 180.0  # "the last minutes": three of them


class HistoryLine(QWidget):
    def __init__(self, parent: QWidget | None = None, window_s: float = WINDOW_S):
        super().__init__(parent)
        self.window_s = window_s
        # (time, memory fraction 0..1, utilisation 0..1 or None); 2 Hz x 3 min = 360 points
        self.points: deque[tuple[float, float, float | None]] = deque(maxlen=2000)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(28)

    def sizeHint(self) -> QSize:
        return QSize(200, 28)

    def add(self, when: float, memory_fraction: float, utilization: float | None) -> None:
        self.points.append(
            (when, memory_fraction, None if utilization is None else utilization / 100)
        )
        while self.points and self.points[0][0] < when - self.window_s:
            self.points.popleft()
        self.update()

    def _path(self, index: int) -> QPainterPath:
        path = QPainterPath()
        if not self.points:
            return path
        end = self.points[-1][0]
        w, h = self.width() - 1, self.height() - 2
        started = False
        for pt in self.points:
            v = pt[index]
            if v is None:
                started = False
                continue
            xy = QPointF(w - (end - pt[0]) / self.window_s * w, 1 + h * (1 - min(1.0, v)))
            if started:
                path.lineTo(xy)
            else:
                path.moveTo(xy)
                started = True
        return path

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#f6f7f9"))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("#b8c4d6"), 1))
        p.drawPath(self._path(2))  # utilisation, faint
        p.setPen(QPen(QColor("#3b82c4"), 1.5))
        p.drawPath(self._path(1))  # memory
        p.end()
