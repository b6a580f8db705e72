"""Pair with a worker: type the code it shows, once. Runs the exchange off the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.cluster.identity import Identity, Peer, TrustStore, short_fingerprint
from layerlab.core.cluster.link import LinkError, pair
from layerlab.core.cluster.pairing import PairingFailed, normalise_code


class _PairJob(QObject):
    done = Signal(object)  # Peer
    failed = Signal(str)

    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        address: str,
        code: str,
        fingerprint: str | None,
    ):
        super().__init__()
        self.args = (identity, trust, address, code, fingerprint)

    def run(self) -> None:
        try:
            self.done.emit(pair(*self.args))
        except (LinkError, PairingFailed) as e:
            self.failed.emit(str(e))
        except Exception as e:  # the person still needs to see what happened
            self.failed.emit(f"Pairing failed: {e}")


class PairingDialog(QDialog):
    paired = Signal(object)  # Peer

    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        address: str = "",
        worker_name: str = "",
        fingerprint: str | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle(f"Pair with {worker_name}" if worker_name else "Pair with a worker")
        self.identity, self.trust, self.fingerprint = identity, trust, fingerprint
        self.peer: Peer | None = None
        # every try's thread with its job, until that thread has finished (see _forget)
        self._tries: list[tuple[QThread, _PairJob]] = []
        intro = QLabel(
            "On the other machine, switch on “Share this machine's GPUs” and type the "
            "pairing code it shows. You do this once; after that this computer and that "
            "worker recognise each other's keys."
        )
        intro.setWordWrap(True)
        self.address = QLineEdit(address)
        self.address.setPlaceholderText("192.168.1.20:50050")
        self.code = QLineEdit()
        self.code.setObjectName("codeInput")
        self.code.setPlaceholderText("123-456")
        self.code.setInputMask("999-999;_")
        form = QFormLayout()
        form.addRow("Worker", self.address)
        if fingerprint:
            form.addRow("Its key", QLabel(short_fingerprint(fingerprint)))
        form.addRow("Pairing code", self.code)
        self.message = QLabel("")
        self.message.setObjectName("pairMessage")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.pair_button = self.buttons.addButton("Pair", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.pair_button.clicked.connect(self.start_pairing)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

    def start_pairing(self) -> None:
        try:
            code = normalise_code(self.code.text())
        except PairingFailed as e:
            self.message.setText(str(e))
            return
        self.pair_button.setEnabled(False)
        self.message.setText("Pairing…")
        thread = QThread(self)
        job = _PairJob(
            self.identity, self.trust, self.address.text().strip(), code, self.fingerprint
        )
        job.moveToThread(thread)
        thread.started.connect(job.run)
        job.done.connect(self._done)
        job.failed.connect(self._failed)
        job.done.connect(thread.quit)
        job.failed.connect(thread.quit)
        # The job is let go here, on the GUI thread, once its thread has finished. Letting
        # it go when the next try started (it was replaced) could delete it while its thread
        # was still unwinding from run(): a crash in that thread (seen once on a loaded CI).
        thread.finished.connect(self._forget)
        self._tries.append((thread, job))
        thread.start()

    def _forget(self) -> None:
        for t in [t for t in self._tries if t[0].isFinished()]:
            self._tries.remove(t)
            t[0].deleteLater()

    def _done(self, peer: Peer) -> None:
        self.peer = peer
        self.pair_button.setEnabled(True)
        self.message.setText(
            f"Paired with {peer.name} (key {short_fingerprint(peer.fingerprint)})."
        )
        self.paired.emit(peer)

    def _failed(self, problem: str) -> None:
        self.pair_button.setEnabled(True)
        self.message.setText(problem)

    def done(self, result: int) -> None:
        for thread, _ in self._tries:
            thread.quit()
            thread.wait(15000)
        super().done(result)
