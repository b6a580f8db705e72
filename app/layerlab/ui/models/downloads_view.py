"""The downloads list: one row per download, bar, bytes, speed, time left, pause/resume/cancel."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.hub.downloads import DownloadItem

_STATE_WORDS = {
    "queued": "waiting its turn",
    "downloading": "",
    "waiting": "",
    "waiting_for_network": "",  # the note says it: waiting for the network, goes on by itself
    "paused": "paused",
    "verifying": "checking sha256…",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


class DownloadRow(QWidget):
    def __init__(self, item: DownloadItem, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.item_id = item.id
        self._bridge = bridge
        self.title = QLabel(item.name)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.pause = QPushButton("Pause")
        self.cancel = QPushButton("Cancel")
        self.pause.clicked.connect(self._pause_or_resume)
        self.cancel.clicked.connect(lambda: bridge.cancel(self.item_id))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.pause)
        top.addWidget(self.cancel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        lay.addWidget(self.text)
        self._state = item.state
        self.show_item(item)

    def _pause_or_resume(self) -> None:
        if self._state in ("paused", "failed"):
            self._bridge.resume(self.item_id)
        else:
            self._bridge.pause(self.item_id)

    def show_item(self, item: DownloadItem) -> None:
        self._state = item.state
        self.bar.setValue(int(item.fraction * 1000))
        words = _STATE_WORDS[item.state]
        text = item.progress_text()
        if words:
            text += f" · {words}"
        if item.note and item.state not in ("downloading", "verifying"):
            text += f"\n{item.note}"
        self.text.setText(text)
        finished = item.state in ("done", "cancelled")
        self.pause.setText(
            "Resume" if item.state == "paused" else "Retry" if item.state == "failed" else "Pause"
        )
        self.pause.setVisible(not finished)
        self.cancel.setVisible(not finished)


class DownloadsView(QWidget):
    def __init__(self, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self.rows: dict[int, DownloadRow] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.empty = QLabel("No downloads yet.")
        self._layout.addWidget(self.empty)
        self._layout.addStretch(1)
        bridge.downloadChanged.connect(self.show_item)

    def show_item(self, item: DownloadItem) -> None:
        row = self.rows.get(item.id)
        if row is None:
            row = self.rows[item.id] = DownloadRow(item, self._bridge, self)
            self._layout.insertWidget(self._layout.count() - 1, row)
            self.empty.hide()
        row.show_item(item)
