"""The Workers list: a view of the head's workers, and of those found on the LAN to pair with.

The head (core/head) holds the list, the probe answers, the links and discovery; this panel
only shows them and hands the person's clicks back. Every worker is shown by the address the
person knows: a plain llama.cpp RPC worker by its RPC address, a paired LayerLab worker by its
LAN link address and its name.

During and after an answer each paired worker's row shows the time per generated token the
head spent waiting on it ("waits 3.1 ms/token"; core/cluster/token_waits.py):

    window.chat.answerStarted.connect(window.workers.follow_answer)

A plain worker is reached by llama.cpp directly, with nothing in between to time it; its row
says that the number needs a link.

Discovery (mDNS) starts when the panel is first shown. LAYERLAB_DISCOVERY=off turns it off; a
comma list of interface addresses limits it to those (tests use 127.0.0.1).
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.cluster.identity import Peer
from layerlab.core.cluster.token_waits import AnswerWaits
from layerlab.core.endpoint import BadAddress
from layerlab.core.head import FoundChanged, Head
from layerlab.ui.cluster.pairing_dialog import PairingDialog
from layerlab.ui.head_bridge import HeadBridge

ADDRESS_ROLE = Qt.ItemDataRole.UserRole
FOUND_ROLE = Qt.ItemDataRole.UserRole + 1
_OK, _BAD, _ASKING = "✔", "✖", "…"
PLAIN_WAIT_NOTE = "waiting per token: measured for paired workers only (pair it to see it)"
DISCOVERY_ENV = "LAYERLAB_DISCOVERY"


def discovery_interfaces() -> list[str] | bool | None:
    """False: off; None: every interface; else the interface addresses to browse on."""
    value = os.environ.get(DISCOVERY_ENV, "").strip()
    if value.lower() in ("off", "0", "no", "false"):
        return False
    return [v.strip() for v in value.split(",") if v.strip()] or None


class WorkersPanel(QGroupBox):
    def __init__(self, bridge: HeadBridge, parent: QWidget | None = None):
        super().__init__("Workers", parent)
        self.bridge = bridge
        self.head: Head = bridge.head
        self.pair_dialog: PairingDialog | None = None
        self._found_problem = ""
        self._waits: AnswerWaits | None = None  # the answer being followed
        self._answered = False  # an answer was followed: plain rows say what they lack

        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.list.setSpacing(3)  # two-line rows: keep each worker's lines apart
        self.address = QLineEdit()
        self.address.setPlaceholderText("host:port, e.g. 192.168.1.20:50052")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.check_button = QPushButton("Check again")
        self.error = QLabel()
        self.error.setStyleSheet("color: #a33")
        self.error.setWordWrap(True)
        self.error.hide()
        self.found_label = QLabel("On this network")
        self.found_list = QListWidget()
        self.found_list.setWordWrap(True)
        self.found_list.setMaximumHeight(90)
        self.pair_button = QPushButton("Pair…")
        self.pair_button.setToolTip(
            "Pair with the selected worker, or with the address typed "
            "above, using the code it shows"
        )

        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.pair_button)
        row2 = QHBoxLayout()
        row2.addWidget(self.check_button)
        row2.addStretch(1)
        row2.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.found_label)
        layout.addWidget(self.found_list)
        layout.addLayout(row)
        layout.addWidget(self.error)
        layout.addLayout(row2)
        self.found_label.hide()
        self.found_list.hide()

        self.add_button.clicked.connect(self._add_typed)
        self.address.returnPressed.connect(self._add_typed)
        self.remove_button.clicked.connect(self._remove_selected)
        self.check_button.clicked.connect(self.check_all)
        self.pair_button.clicked.connect(self.pair_selected)
        self.found_list.itemDoubleClicked.connect(lambda _item: self.pair_selected())
        self.list.itemChanged.connect(self._check_toggled)
        bridge.workersChanged.connect(self._rebuild)
        bridge.workerUpdated.connect(self._refresh)
        bridge.foundChanged.connect(self._show_found)
        self._rebuild()

    # -- what the window and the tests read (all from the head) ------
    def enabled_addresses(self) -> list[str]:
        return self.head.enabled_addresses()

    def follow_answer(self, stream) -> None:
        """Show each worker's wait per token for this answer (`stream`: a ChatStream, or
        anything with piece(str), finished(Finished) and failed(str) signals)."""
        self._waits = self.head.links.answer_waits()
        stream.piece.connect(self._answer_piece)
        stream.finished.connect(self._answer_finished)
        stream.failed.connect(self._answer_failed)
        if not self._answered:
            self._answered = True
            for address in self.enabled_addresses():
                self._refresh(address)

    def _answer_piece(self, _text: str) -> None:
        if self._waits is not None:
            self._waits.piece()  # a snapshot of counters under short locks; no I/O

    def _answer_finished(self, done) -> None:
        waits, self._waits = self._waits, None
        if waits is not None:
            waits.finish(getattr(done, "timings", None) or {})

    def _answer_failed(self, _message: str) -> None:
        self._waits = None  # the live number stays; the lost worker's row says the rest

    # -- the person's list ------
    def _rebuild(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for w in self.head.workers():
            item = QListWidgetItem()
            item.setData(ADDRESS_ROLE, w.address)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if w.enabled else Qt.CheckState.Unchecked)
            self.list.addItem(item)
            self._paint(item)
        self.list.blockSignals(False)
        self._show_found()

    def _check_toggled(self, item: QListWidgetItem) -> None:
        self.head.set_enabled(item.data(ADDRESS_ROLE), item.checkState() == Qt.CheckState.Checked)

    def _add_typed(self) -> None:
        try:
            self.head.add_worker(self.address.text())
        except (BadAddress, ValueError) as e:
            self.error.setText(str(e))  # the typed text stays, so it can be corrected
            self.error.show()
            return
        self.error.hide()
        self.address.clear()

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.head.remove_worker(item.data(ADDRESS_ROLE))

    def check_all(self) -> None:
        self.head.check_all()
        for i in range(self.list.count()):
            self._paint(self.list.item(i))

    def _row_text(self, address: str) -> str:
        name = self.head.label(address)
        if self.head.is_paired(address):
            name += " · paired"
        result = self.head.results.get(address)
        if result is None:
            return f"{_ASKING} {name} — asking…"
        text = f"{_OK if result.ok else _BAD} {name} — {result.summary}"
        info = self.head.links.info(address)
        if info is not None and info.endpoint:
            text += f"\n   {info.summary}"
        elif info is None and result.ok and self._answered:
            text += f"\n   {PLAIN_WAIT_NOTE}"
        return text

    def _paint(self, item: QListWidgetItem) -> None:
        self.list.blockSignals(True)
        item.setText(self._row_text(item.data(ADDRESS_ROLE)))
        item.setToolTip(item.text())
        self.list.blockSignals(False)

    def _refresh(self, address: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ADDRESS_ROLE) == address:
                self._paint(item)

    # -- found on the LAN ------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.start_discovery()

    def start_discovery(self) -> None:
        interfaces = discovery_interfaces()
        if interfaces is False or self.head.browsing:
            return
        self.found_label.show()
        self.found_list.show()
        self.head.start_discovery(interfaces or None)
        self._show_found()

    def _show_found(self, event: FoundChanged | None = None) -> None:
        if event is not None:
            self._found_problem = event.problem
        if not self.head.browsing:
            return
        self.found_list.clear()
        if self._found_problem:
            self.found_list.addItem(QListWidgetItem(self._found_problem))
            return
        rows = self.head.found_rows()
        for row in rows:
            item = QListWidgetItem(f"{row.worker.name} — {row.worker.address} · {row.state}")
            item.setData(FOUND_ROLE, str(row.worker.address))
            self.found_list.addItem(item)
        if not rows:
            waiting = not self.head.found and event is None
            self.found_list.addItem(
                QListWidgetItem(
                    "Looking for workers…" if waiting else "No other workers found yet."
                )
            )

    def pair_selected(self) -> None:
        """Pair with the selected found worker (or the typed address); a paired one is added."""
        item = self.found_list.currentItem()
        address = item.data(FOUND_ROLE) if item is not None else None
        found = self.head.found.get(address) if address else None
        if found is None:
            typed = self.address.text().strip()
            if not typed:
                self.error.setText("Select a worker found on the network, or type its address.")
                self.error.show()
                return
            address = typed
        self.error.hide()
        peer = self.head.links.peer_for(address)
        if peer is not None:
            self._on_paired(peer)
            return
        dialog = PairingDialog(
            self.head.links.identity,
            self.head.links.trust,
            address=address,
            worker_name=found.name if found else "",
            fingerprint=found.fingerprint if found and found.fingerprint else None,
            parent=self,
        )
        dialog.paired.connect(self._on_paired)
        dialog.finished.connect(dialog.deleteLater)
        self.pair_dialog = dialog
        dialog.open()

    def _on_paired(self, peer: Peer) -> None:
        self.address.clear()
        self.head.paired_with(peer)
