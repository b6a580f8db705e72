"""The Workers list: addresses the person added, each probed off the GUI thread and shown
with what it said (devices and free memory) or why it cannot be used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import Qt, Signal
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

from layerlab.core.cluster.probe import ProbeResult, probe
from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.settings import SavedWorker

ADDRESS_ROLE = Qt.ItemDataRole.UserRole
_OK, _BAD, _ASKING = "✔", "✖", "…"


class WorkersPanel(QGroupBox):
    workersChanged = Signal()
    _probed = Signal(object)  # ProbeResult, from the pool threads to the GUI thread

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Workers", parent)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self.results: dict[str, ProbeResult] = {}

        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.address = QLineEdit()
        self.address.setPlaceholderText("host:port, e.g. 192.168.1.20:50052")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.check_button = QPushButton("Check again")
        self.error = QLabel()
        self.error.setStyleSheet("color: #a33")
        self.error.setWordWrap(True)
        self.error.hide()

        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(self.add_button)
        row2 = QHBoxLayout()
        row2.addWidget(self.check_button)
        row2.addStretch(1)
        row2.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addWidget(self.error)
        layout.addLayout(row2)

        self.add_button.clicked.connect(self._add_typed)
        self.address.returnPressed.connect(self._add_typed)
        self.remove_button.clicked.connect(self._remove_selected)
        self.check_button.clicked.connect(self.check_all)
        self.list.itemChanged.connect(lambda _item: self.workersChanged.emit())
        self._probed.connect(self._show_result)

    # -- the person's list ---------------------------------------------------------------
    def set_saved(self, workers: list[SavedWorker]) -> None:
        self.list.clear()
        for w in workers:
            self._add(w.address, w.enabled)

    def saved(self) -> list[SavedWorker]:
        return [SavedWorker(self.list.item(i).data(ADDRESS_ROLE),
                            self.list.item(i).checkState() == Qt.CheckState.Checked)
                for i in range(self.list.count())]

    def enabled_addresses(self) -> list[str]:
        return [w.address for w in self.saved() if w.enabled]

    def _add_typed(self) -> None:
        try:
            ep = Endpoint.parse(self.address.text())
        except BadAddress as e:
            self.error.setText(str(e))  # the typed text stays, so it can be corrected
            self.error.show()
            return
        self.error.hide()
        if str(ep) in [w.address for w in self.saved()]:
            self.error.setText(f"{ep} is already in the list.")
            self.error.show()
            return
        self.address.clear()
        self._add(str(ep), True)
        self.workersChanged.emit()

    def _add(self, address: str, enabled: bool) -> None:
        item = QListWidgetItem(f"{_ASKING} {address} — asking…")
        item.setData(ADDRESS_ROLE, address)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self.list.blockSignals(True)
        item.setCheckState(Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked)
        self.list.addItem(item)
        self.list.blockSignals(False)
        self._pool.submit(lambda: self._probed.emit(probe(address)))

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.results.pop(item.data(ADDRESS_ROLE), None)
            self.list.takeItem(self.list.row(item))
        self.workersChanged.emit()

    def check_all(self) -> None:
        for i in range(self.list.count()):
            address = self.list.item(i).data(ADDRESS_ROLE)
            self.list.item(i).setText(f"{_ASKING} {address} — asking…")
            self._pool.submit(lambda a=address: self._probed.emit(probe(a)))

    def _show_result(self, result: ProbeResult) -> None:
        address = str(result.endpoint)
        self.results[address] = result
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ADDRESS_ROLE) == address:
                mark = _OK if result.ok else _BAD
                self.list.blockSignals(True)
                item.setText(f"{mark} {address} — {result.summary}")
                item.setToolTip(result.summary)
                self.list.blockSignals(False)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
