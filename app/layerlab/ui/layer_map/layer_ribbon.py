"""One strip of all units (blocks + output), cut into device segments drawn to scale.

The boundaries between segments can be dragged; the ribbon emits the new unit counts
and the planner decides what they cost.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from layerlab.ui.layer_map.colors import device_color

MARGIN = 8
HANDLE_PX = 6


class LayerRibbon(QWidget):
    splitDragged = Signal(list)  # counts per segment (CPU blocks first), on release

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(56)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        self.labels: list[str] = []
        self.counts: list[int] = []  # units per segment; the CPU's are blocks only
        self.colors: list[QColor] = []
        self._drag: int | None = None  # boundary index being dragged

    def set_segments(
        self, labels: list[str], counts: list[int], colors: list[QColor] | None = None
    ) -> None:
        if self._drag is not None:
            return  # do not fight the person's hand mid-drag
        self.labels, self.counts = list(labels), list(counts)
        self.colors = colors or [device_color(i) for i in range(len(labels))]
        self.setToolTip("Drag a boundary to move layers between devices.")
        self.update()

    @property
    def n_units(self) -> int:
        return sum(self.counts)

    # geometry
    def _track(self) -> QRectF:
        return QRectF(MARGIN, 18, self.width() - 2 * MARGIN, self.height() - 26)

    def unit_x(self, unit: int) -> float:
        t = self._track()
        return t.left() + t.width() * unit / max(self.n_units, 1)

    def boundary_x(self, b: int) -> float:
        """x of the boundary after segment b."""
        return self.unit_x(sum(self.counts[: b + 1]))

    def _boundary_at(self, x: float) -> int | None:
        for b in range(len(self.counts) - 1):
            if abs(self.boundary_x(b) - x) <= HANDLE_PX:
                return b
        return None

    # painting
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        t = self._track()
        p.fillRect(t, QColor("#f1f2f6"))
        start = 0
        for i, c in enumerate(self.counts):
            if c <= 0:
                continue
            x0, x1 = self.unit_x(start), self.unit_x(start + c)
            rect = QRectF(x0, t.top(), x1 - x0, t.height())
            p.fillRect(rect, self.colors[i])
            p.setPen(QColor("white"))
            text = self._segment_text(i, start, c)
            if p.fontMetrics().horizontalAdvance(text) < rect.width() - 4:
                p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
            start += c
        # layer ticks every 10 blocks
        p.setPen(QPen(QColor("#57606f"), 1))
        for u in range(0, self.n_units, 10):
            x = self.unit_x(u)
            p.drawLine(QPointF(x, t.top() - 4), QPointF(x, t.top()))
            p.drawText(QPointF(x + 2, t.top() - 5), str(u))
        # handles
        for b in range(len(self.counts) - 1):
            x = self.boundary_x(b)
            p.setPen(QPen(QColor("#2f3542"), 3 if b == self._drag else 2))
            p.drawLine(QPointF(x, t.top() - 2), QPointF(x, t.bottom() + 2))
        p.end()

    def _segment_text(self, i: int, start: int, c: int) -> str:
        n_blocks = self.n_units - 1
        last = start + c - 1
        out = last >= n_blocks
        last_block = min(last, n_blocks - 1)
        rng = f"{start}-{last_block}" if last_block > start else f"{start}"
        if out and last_block < start:
            rng = "output"
        elif out:
            rng += " + out"
        return f"{self.labels[i]} {rng}"

    # dragging
    def mousePressEvent(self, e: QMouseEvent) -> None:
        self._drag = self._boundary_at(e.position().x())
        if self._drag is None:
            super().mousePressEvent(e)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        x = e.position().x()
        if self._drag is None:
            on = self._boundary_at(x) is not None
            self.setCursor(Qt.CursorShape.SplitHCursor if on else Qt.CursorShape.ArrowCursor)
            return
        b = self._drag
        t = self._track()
        unit = round((x - t.left()) / t.width() * self.n_units)
        lo = sum(self.counts[:b])
        hi = lo + self.counts[b] + self.counts[b + 1]
        # the last segment keeps at least the output unit
        if b + 1 == len(self.counts) - 1:
            hi -= 1
        unit = max(lo, min(hi, unit))
        self.counts[b] = unit - lo
        self.counts[b + 1] = hi - unit + (1 if b + 1 == len(self.counts) - 1 else 0)
        self.update()

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        if self._drag is None:
            return
        self._drag = None
        self.splitDragged.emit(list(self.counts))
