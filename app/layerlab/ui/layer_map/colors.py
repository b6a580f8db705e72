"""One colour per device position, shared by the ribbon and the rows."""

from __future__ import annotations

from PySide6.QtGui import QColor

# device hues kept apart from the memory colours below (blue, green, orange)
_PALETTE = ["#7f8c8d", "#8854d0", "#0a7e8c", "#c2185b", "#6d4c41", "#3c40c6", "#b33939", "#227093"]
WEIGHTS = QColor("#2e86de")
KV = QColor("#10ac84")
COMPUTE = QColor("#ff9f43")
RESERVE = QColor("#c8d6e5")
OVER = QColor("#ee5253")


def device_color(index: int) -> QColor:
    """index 0 is the host CPU (grey)."""
    return QColor(_PALETTE[index % len(_PALETTE)])
