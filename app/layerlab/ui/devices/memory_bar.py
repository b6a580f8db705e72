"""MemoryBar: one device's memory, used vs total, with LayerLab's model share marked."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

NEAR_FULL = 0.85  # amber from here: a model that grows its KV cache may not fit
FULL = 0.95  # red: the next allocation likely fails

COLOURS = {
    "ok": QColor("#3b82c4"),
    "near": QColor("#d99a1e"),
    "full": QColor("#d0453a"),
    "stale": QColor("#9a9a9a"),
    "model": QColor("#6c4fc4"),
    "track": QColor("#e4e6ea"),
}


def level(fraction: float) -> str:
    if fraction >= FULL:
        return "full"
    if fraction >= NEAR_FULL:
        return "near"
    return "ok"


class MemoryBar(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.used = 0
        self.total = 0
        self.model = 0  # bytes LayerLab's loaded model holds here (part of `used`)
        self.stale = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(12)

    def sizeHint(self) -> QSize:
        return QSize(200, 12)

    def set_values(self, used: int, total: int, model: int, stale: bool) -> None:
        if (used, total, model, stale) != (self.used, self.total, self.model, self.stale):
            self.used, self.total, self.model, self.stale = used, total, model, stale
            self.update()

    @property
    def fraction(self) -> float:
        return min(1.0, self.used / self.total) if self.total > 0 else 0.0

    @property
    def level(self) -> str:
        return "stale" if self.stale else level(self.fraction)

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(COLOURS["track"])
        p.drawRoundedRect(r, 3, 3)
        if self.total > 0:
            w = r.width() * self.fraction
            p.setBrush(COLOURS[self.level])
            p.drawRoundedRect(QRectF(r.left(), r.top(), w, r.height()), 3, 3)
            if self.model > 0 and not self.stale:
                mw = r.width() * min(1.0, self.model / self.total)
                p.setBrush(QBrush(COLOURS["model"], Qt.BrushStyle.BDiagPattern))
                p.setPen(QPen(COLOURS["model"], 1))
                p.drawRect(QRectF(r.left(), r.top(), min(mw, w) if w else mw, r.height()))
        p.end()
