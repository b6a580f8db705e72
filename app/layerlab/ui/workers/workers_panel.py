"""The Workers list: the workers the person uses, and those found on the LAN to pair with.

Every worker is known by the address the person sees: a plain llama.cpp RPC worker by its
RPC address ("192.168.1.20:50052"), a paired LayerLab worker by its LAN link address
("192.168.1.20:50050", where it announced itself and was paired) and shown with its name.
`enabled_addresses()`, `results` and `saved()` all use that address, and so do the plan,
the engine's states and `Failed.lost_workers`: nothing the main window does with them
changes for paired workers.

The one thing that makes a paired worker usable: llama.cpp cannot speak the encrypted link,
so the engine must reach it through a local forwarder. `self.links` (core HeadLinks) owns
those forwarders, and the supervisor routes through them once it is attached:

    window.workers.attach(controller.supervisor)   # once, after both exist

That also hands the supervisor the link heartbeats, so a worker that dies mid-answer is
reported in milliseconds. Without it a paired worker fails its pre-load check with a clear
message (its link port does not speak RPC); nothing crashes.

During and after an answer each paired worker's row shows the time per generated token
the head spent waiting on it ("waits 3.1 ms/token"; core/cluster/token_waits.py):

    window.chat.answerStarted.connect(window.workers.follow_answer)

A plain worker is reached by llama.cpp directly, with nothing in between to time it; its
row says that the number needs a link (token_waits.py says why we do not relay it).
`probed(address)` is emitted when a probe's answer is in `results`.

Probing, discovery (mDNS, started when the panel is first shown) and pairing run off the GUI
thread; results come back as signals. LAYERLAB_DISCOVERY=off turns discovery off; a comma
list of interface addresses limits it to those (tests use 127.0.0.1).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import Qt, Signal
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

from layerlab.core.cluster.discovery import DiscoveredWorker
from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.cluster.identity import Peer
from layerlab.core.cluster.link import LINK_PROTOCOL
from layerlab.core.cluster.probe import ProbeResult
from layerlab.core.cluster.token_waits import AnswerWaits
from layerlab.core.endpoint import BadAddress, Endpoint
from layerlab.core.settings import SavedWorker
from layerlab.ui.cluster.pairing_dialog import PairingDialog

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
    workersChanged = Signal()
    probed = Signal(str)  # address: its probe's answer is now in `results`
    _probed = Signal(object)  # ProbeResult, from the pool threads to the GUI thread
    _discovered = Signal(object)  # list[DiscoveredWorker], from zeroconf's thread
    _linkChanged = Signal(str)  # address, from the links' threads

    def __init__(self, parent: QWidget | None = None, links: HeadLinks | None = None):
        super().__init__("Workers", parent)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self.results: dict[str, ProbeResult] = {}
        self.links = links or HeadLinks()
        self.links.on_change = self._linkChanged.emit
        self.found: dict[str, DiscoveredWorker] = {}  # link address -> what it announced
        self.pair_dialog: PairingDialog | None = None
        self._browser = None
        self._browsing = False
        self._closed = False
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
        self.list.itemChanged.connect(lambda _item: self.workersChanged.emit())
        self._probed.connect(self._show_result)
        self._discovered.connect(self._show_found)
        self._linkChanged.connect(self._refresh_link)

    # -- wiring ---------------------------------------------------------------------------
    def attach(self, supervisor) -> None:
        """Let `supervisor` reach paired workers through their links (see module doc)."""
        self.links.attach(supervisor)

    def follow_answer(self, stream) -> None:
        """Show each worker's wait per token for this answer (`stream`: a ChatStream, or
        anything with piece(str), finished(Finished) and failed(str) signals)."""
        self._waits = self.links.answer_waits()
        stream.piece.connect(self._answer_piece)
        stream.finished.connect(self._answer_finished)
        stream.failed.connect(self._answer_failed)
        if not self._answered:
            self._answered = True
            for address in self.enabled_addresses():
                if not self.links.is_paired(address):
                    self._refresh_link(address)

    def _answer_piece(self, _text: str) -> None:
        if self._waits is not None:
            self._waits.piece()  # a snapshot of counters under short locks; no I/O

    def _answer_finished(self, done) -> None:
        waits, self._waits = self._waits, None
        if waits is not None:
            waits.finish(getattr(done, "timings", None) or {})

    def _answer_failed(self, _message: str) -> None:
        self._waits = None  # the live number stays; the lost worker's row says the rest

    # -- the person's list ---------------------------------------------------------------
    def set_saved(self, workers: list[SavedWorker]) -> None:
        kept = {w.address for w in workers}
        for address in [a for a in self.links.open_addresses() if a not in kept]:
            self._pool.submit(self.links.close, address)
        self.list.clear()
        for w in workers:
            self._add(w.address, w.enabled)
        self._show_found(list(self.found.values()))

    def saved(self) -> list[SavedWorker]:
        return [
            SavedWorker(
                self.list.item(i).data(ADDRESS_ROLE),
                self.list.item(i).checkState() == Qt.CheckState.Checked,
            )
            for i in range(self.list.count())
        ]

    def enabled_addresses(self) -> list[str]:
        """The person's addresses of the checked workers (paired ones: their link address;
        an attached supervisor routes those through the local forwarder)."""
        return [w.address for w in self.saved() if w.enabled]

    def is_paired(self, address: str) -> bool:
        return self.links.is_paired(address)

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
        item = QListWidgetItem(f"{_ASKING} {self._name(address)} — asking…")
        item.setData(ADDRESS_ROLE, address)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self.list.blockSignals(True)
        item.setCheckState(Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked)
        self.list.addItem(item)
        self.list.blockSignals(False)
        self._submit_probe(address)

    def _submit_probe(self, address: str, reopen: bool = False) -> None:
        def job() -> None:
            try:
                if reopen:  # re-paired: the old link pinned the old key
                    self.links.close(address)
                result = self.links.probe(address)
            except Exception as e:  # the row must never stay at "asking…"
                result = ProbeResult(Endpoint.parse(address), False, str(e), "unreachable")
            if not self._closed:
                self._probed.emit(result)

        self._pool.submit(job)

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            address = item.data(ADDRESS_ROLE)
            self.results.pop(address, None)
            self.list.takeItem(self.list.row(item))
            self._pool.submit(self.links.close, address)  # its forwarder is no longer used
        self._show_found(list(self.found.values()))
        self.workersChanged.emit()

    def check_all(self) -> None:
        for i in range(self.list.count()):
            address = self.list.item(i).data(ADDRESS_ROLE)
            self.list.item(i).setText(f"{_ASKING} {self._name(address)} — asking…")
            self._submit_probe(address)

    def _name(self, address: str) -> str:
        """'bench-box (192.168.1.20:50050) 🔒' for a paired worker, else the address."""
        peer = self.links.peer_for(address)
        return f"{peer.name} ({address}) · paired" if peer else address

    def _row_text(self, address: str) -> str:
        result = self.results.get(address)
        if result is None:
            return f"{_ASKING} {self._name(address)} — asking…"
        mark = _OK if result.ok else _BAD
        text = f"{mark} {self._name(address)} — {result.summary}"
        info = self.links.info(address)
        if info is not None and info.endpoint:
            text += f"\n   {info.summary}"
        elif info is None and result.ok and self._answered:
            text += f"\n   {PLAIN_WAIT_NOTE}"
        return text

    def _show_result(self, result: ProbeResult) -> None:
        address = str(result.endpoint)
        self.results[address] = result
        self._refresh_link(address)
        self.probed.emit(address)

    def _refresh_link(self, address: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ADDRESS_ROLE) == address:
                self.list.blockSignals(True)
                item.setText(self._row_text(address))
                item.setToolTip(item.text())
                self.list.blockSignals(False)

    # -- found on the LAN ------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.start_discovery()

    def start_discovery(self) -> None:
        """Browse the LAN for sharing workers (once; zeroconf starts off the GUI thread)."""
        interfaces = discovery_interfaces()
        if self._browsing or interfaces is False or self._closed:
            return
        self._browsing = True
        self.found_label.show()
        self.found_list.show()
        self.found_list.addItem(QListWidgetItem("Looking for workers…"))

        def start() -> None:
            from layerlab.core.cluster.discovery import WorkerBrowser

            try:
                browser = WorkerBrowser(self._discovered.emit, interfaces)
            except OSError as e:
                self._discovered.emit(e)
                return
            if self._closed:
                threading.Thread(target=browser.close, daemon=True).start()
            else:
                self._browser = browser

        self._pool.submit(start)

    def _show_found(self, workers: list[DiscoveredWorker] | OSError) -> None:
        if isinstance(workers, OSError):
            self.found_list.clear()
            self.found_list.addItem(QListWidgetItem(f"Cannot look for workers: {workers}"))
            return
        if not self._browsing:
            return
        self.found = {str(w.address): w for w in workers}
        in_list = {w.address for w in self.saved()}
        self.found_list.clear()
        for address, w in self.found.items():
            if address in in_list:
                continue
            if w.link_protocol != LINK_PROTOCOL:
                state = f"runs LayerLab {w.layerlab or '?'} with link protocol {w.link_protocol}"
            elif self.links.is_paired(address):
                state = "paired · Add"
            else:
                state = "not paired · Pair…"
            item = QListWidgetItem(f"{w.name} — {address} · {state}")
            item.setData(FOUND_ROLE, address)
            self.found_list.addItem(item)
        if self.found_list.count() == 0:
            self.found_list.addItem(QListWidgetItem("No other workers found yet."))

    def pair_selected(self) -> None:
        """Pair with the selected found worker (or the typed address); a paired one is added."""
        item = self.found_list.currentItem()
        address = item.data(FOUND_ROLE) if item is not None else None
        found = self.found.get(address) if address else None
        if found is None:
            typed = self.address.text().strip()
            if not typed:
                self.error.setText("Select a worker found on the network, or type its address.")
                self.error.show()
                return
            address = typed
        self.error.hide()
        if self.links.is_paired(address):
            self._on_paired(self.links.peer_for(address))
            return
        dialog = PairingDialog(
            self.links.identity,
            self.links.trust,
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
        if peer.address not in [w.address for w in self.saved()]:
            self._add(peer.address, True)
        else:
            self.results.pop(peer.address, None)
            self._refresh_link(peer.address)
            self._submit_probe(peer.address, reopen=True)
        self.address.clear()
        self._show_found(list(self.found.values()))
        self.workersChanged.emit()

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        browser, self._browser = self._browser, None
        links = self.links

        def close() -> None:  # zeroconf's goodbye and the links' threads: not on the GUI thread
            if browser is not None:
                browser.close()
            links.close_all()

        threading.Thread(target=close, name="workers-close", daemon=True).start()
