"""'Share this machine's GPUs': one switch, the pairing code, and who is connected."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from layerlab.core.cluster.identity import short_fingerprint
from layerlab.ui.cluster.share_process import ShareProcess


class ShareSwitch(QWidget):
    def __init__(self, process: ShareProcess, parent: QWidget | None = None):
        super().__init__(parent)
        self.process = process
        self.switch = QCheckBox("Share this machine's GPUs")
        self.switch.setObjectName("shareSwitch")
        self.explain = QLabel(
            "Heads on your network can use this machine's GPUs after you pair them with the "
            "code below. Nothing is reachable until you switch this on."
        )
        self.explain.setWordWrap(True)
        self.code_caption = QLabel("Pairing code")
        self.code = QLabel("")
        self.code.setObjectName("pairingCode")
        font = QFont(self.code.font())
        font.setPointSize(font.pointSize() * 2 + 4)
        font.setBold(True)
        font.setLetterSpacing(QFont.SpacingType.AbsoluteSpacing, 3)
        self.code.setFont(font)
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.identity = QLabel("")
        self.identity.setWordWrap(True)
        self.status = QLabel("Not shared.")
        self.status.setObjectName("shareStatus")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        for w in (
            self.switch,
            self.explain,
            self.code_caption,
            self.code,
            self.identity,
            self.status,
        ):
            layout.addWidget(w)
        layout.addStretch(1)
        self._show_code(False)

        self.switch.toggled.connect(self._toggled)
        process.sharing.connect(self._sharing)
        process.code_changed.connect(self.code.setText)
        process.event.connect(self._event)
        process.stopped.connect(self._stopped)

    def _show_code(self, visible: bool) -> None:
        for w in (self.code_caption, self.code, self.identity):
            w.setVisible(visible)

    def _toggled(self, on: bool) -> None:
        if on:
            self.status.setText("Starting…")
            self.process.start()
        else:
            self.process.stop()

    def _sharing(self, ev: dict) -> None:
        self._show_code(True)
        self.identity.setText(
            f"Shared as <b>{ev.get('name', '')}</b> on {ev.get('address', '')} · key "
            f"{short_fingerprint(str(ev.get('fingerprint', '')))}"
        )
        n = ev.get("paired_heads", 0)
        self.status.setText(
            f"Waiting for a head. {n} head(s) paired so far."
            if n
            else "Waiting for a head to pair."
        )

    def _event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "paired":
            self.status.setText(f"Paired with {ev.get('head')}. The code above is new.")
        elif kind == "pairing_failed":
            self.status.setText("Someone typed a wrong code.")
        elif kind == "serving":
            self.status.setText(f"Serving {ev.get('head')}.")
        elif kind == "idle":
            self.status.setText(f"{ev.get('head')} disconnected; ready for the next head.")

    def _stopped(self, why: str) -> None:
        self._show_code(False)
        self.code.setText("")
        self.status.setText(why or "Not shared.")
        if self.switch.isChecked():
            self.switch.blockSignals(True)
            self.switch.setChecked(False)
            self.switch.blockSignals(False)
