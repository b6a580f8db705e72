"""'Let other apps use this model': the switch that opens the head's API (core/api_front.py),
where it listens, and the URL and key to paste into another app.

Starting and stopping (reading the key from a keyring, binding, uvicorn's start) run on a
background lane; the panel only shows what the front says back.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.api_front import ApiFront, ApiStatus
from layerlab.ui.wiring.background import BackgroundLane

WORKS_WITH = [
    (
        "Open WebUI",
        "Admin Panel → Settings → Connections → OpenAI API: “+”, the URL as the API Base "
        "URL and the key as the API key.",
    ),
    (
        "Continue",
        "in config.yaml, a model with <code>provider: openai</code>, "
        "<code>apiBase:</code> the URL and <code>apiKey:</code> the key.",
    ),
    (
        "SillyTavern",
        "API Connections → Chat Completion → Custom (OpenAI-compatible): the URL as the "
        "Custom Endpoint and the key as the API key.",
    ),
    (
        "the openai client",
        "<code>OpenAI(base_url=&quot;{url}&quot;, api_key=&quot;the key&quot;)</code> "
        "(or OPENAI_BASE_URL and OPENAI_API_KEY).",
    ),
]


class ApiPanel(QWidget):
    statusChanged = Signal(object)  # ApiStatus, after each start or stop

    def __init__(self, head_or_front, parent: QWidget | None = None):
        super().__init__(parent)
        # a Head (its .api), the window's HeadBridge (its head's), or an ApiFront itself
        if isinstance(head_or_front, ApiFront):
            self.front: ApiFront = head_or_front
        elif hasattr(head_or_front, "api"):
            self.front = head_or_front.api
        else:
            self.front = head_or_front.head.api
        self._lane = BackgroundLane("api-panel", self)

        self.switch = QCheckBox("Let other apps use this model")
        self.switch.setObjectName("apiSwitch")
        bold = self.switch.font()
        bold.setBold(True)
        self.switch.setFont(bold)
        self.explain = QLabel(
            "Other programs can then send this model requests in the OpenAI API's shape, "
            "with the key below. Nothing listens until you switch this on."
        )
        self.explain.setWordWrap(True)

        self.only_here = QRadioButton("Only this computer")
        self.only_here.setObjectName("apiLoopback")
        self.network = QRadioButton("Other computers on my network too")
        self.network.setObjectName("apiLan")
        self.where = QButtonGroup(self)
        self.where.addButton(self.only_here)
        self.where.addButton(self.network)
        status = self.front.status
        (self.network if status.lan else self.only_here).setChecked(True)
        self.port = QSpinBox()
        self.port.setObjectName("apiPort")
        self.port.setRange(1024, 65535)
        self.port.setValue(status.port)
        where_row = QHBoxLayout()
        where_row.addWidget(self.only_here)
        where_row.addWidget(self.network)
        where_row.addStretch(1)
        where_row.addWidget(QLabel("Port"))
        where_row.addWidget(self.port)

        self.status = QLabel("")
        self.status.setObjectName("apiStatus")
        self.status.setWordWrap(True)

        self.url = QLineEdit()
        self.url.setObjectName("apiUrl")
        self.url.setReadOnly(True)
        self.copy_url = QPushButton("Copy")
        self.copy_url.setObjectName("copyApiUrl")
        self.key = QLineEdit()
        self.key.setObjectName("apiKey")
        self.key.setReadOnly(True)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.show_key = QPushButton("Show")
        self.show_key.setCheckable(True)
        self.copy_key = QPushButton("Copy")
        self.copy_key.setObjectName("copyApiKey")
        grid = QGridLayout()
        grid.addWidget(QLabel("URL"), 0, 0)
        grid.addWidget(self.url, 0, 1)
        grid.addWidget(self.copy_url, 0, 2, 1, 2)
        grid.addWidget(QLabel("API key"), 1, 0)
        grid.addWidget(self.key, 1, 1)
        grid.addWidget(self.show_key, 1, 2)
        grid.addWidget(self.copy_key, 1, 3)
        self.paste_box = QWidget()
        self.paste_box.setLayout(grid)
        grid.setContentsMargins(0, 0, 0, 0)

        self.works_with = QLabel("")
        self.works_with.setObjectName("apiWorksWith")
        self.works_with.setWordWrap(True)

        layout = QVBoxLayout(self)
        for w in (self.switch, self.explain):
            layout.addWidget(w)
        layout.addLayout(where_row)
        for w in (self.status, self.paste_box, self.works_with):
            layout.addWidget(w)
        layout.addStretch(1)

        self.switch.toggled.connect(self._switched)
        self.network.toggled.connect(lambda _: self._moved())
        self.port.editingFinished.connect(self._moved)
        self.copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.url.text()))
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.key.text()))
        self.show_key.toggled.connect(
            lambda on: self.key.setEchoMode(
                QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password
            )
        )
        self._show(status)

    # -- what the person does ----------------------------------------------------------------
    def _switched(self, on: bool) -> None:
        if on:
            self._start()
        else:
            self._busy("Closing…")
            self._lane.submit(self.front.stop, self._show, self._failed)

    def _moved(self) -> None:
        """A new address or port while on: listen there instead."""
        if self.switch.isChecked() and not self._lane.busy:
            s = self.front.status
            if s.on and (s.lan != self.network.isChecked() or s.port != self.port.value()):
                self._start()

    def _start(self) -> None:
        lan, port = self.network.isChecked(), self.port.value()
        self._busy("Opening…")
        self._lane.submit(lambda: self.front.start(lan=lan, port=port), self._show, self._failed)

    # -- what the front says back ------------------------------------------------------------
    def _busy(self, text: str) -> None:
        self.status.setText(text)
        self.switch.setEnabled(False)

    def _failed(self, error: Exception) -> None:
        self._show(ApiStatus(False, problem=f"The API could not be opened: {error}"))

    def _show(self, s: ApiStatus) -> None:
        self.switch.setEnabled(True)
        if self.switch.isChecked() != s.on:
            self.switch.blockSignals(True)
            self.switch.setChecked(s.on)
            self.switch.blockSignals(False)
        if s.on:
            reach = "from other computers on your network" if s.lan else "from this computer"
            said = f"On: apps can reach this model {reach}."
            self.status.setText(f"{said} {s.problem}" if s.problem else said)
        else:
            self.status.setText(s.problem or "Off: no other app can reach this model.")
        self.paste_box.setVisible(s.on)
        self.url.setText(s.url)
        self.key.setText(s.key)
        url = html.escape(s.url or "the URL")
        lines = "".join(
            f"<li><b>{name}</b>: {how.replace('{url}', url)}</li>" for name, how in WORKS_WITH
        )
        self.works_with.setText(f"Works with:<ul style='margin-left:-20px'>{lines}</ul>")
        self.statusChanged.emit(s)

    def closeEvent(self, event) -> None:
        self._lane.close()  # the API stays as it is: the head owns it and closes it
        super().closeEvent(event)
