"""Screenshots of the cluster widgets: `xvfb-run -a python tests/cluster/make_screenshots.py`.

Runs a real sharing worker on loopback so the switch shows a real pairing code.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from layerlab.core.cluster.identity import TrustStore, load_or_create_identity
from layerlab.ui.cluster.pairing_dialog import PairingDialog
from layerlab.ui.cluster.share_process import ShareProcess
from layerlab.ui.cluster.share_switch import ShareSwitch

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def wait(app: QApplication, cond, ms: int = 30000) -> None:
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: cond() and loop.quit())
    timer.start(50)
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    timer.stop()


def main() -> int:
    app = QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp())
    proc = ShareProcess(["--listen", "127.0.0.1:47552", "--threads", "1", "--cache-dir", "",
                         "--share-on", "127.0.0.1:47550", "--name", "bench-box",
                         "--no-announce", "--state-dir", str(tmp / "worker")])
    switch = ShareSwitch(proc)
    switch.setWindowTitle("LayerLab: share")
    switch.resize(440, 260)
    switch.show()
    switch.switch.setChecked(True)
    wait(app, lambda: len(switch.code.text()) == 7)
    wait(app, lambda: False, 300)
    switch.grab().save(str(OUT / "cluster-share-switch.png"))
    head = load_or_create_identity(tmp / "head", "desk")
    dialog = PairingDialog(head, TrustStore(tmp / "head"), address="127.0.0.1:47550",
                           worker_name="bench-box",
                           fingerprint=load_or_create_identity(tmp / "worker").fingerprint)
    dialog.resize(460, 260)
    dialog.show()
    dialog.code.setText("000000" if switch.code.text() != "000-000" else "111111")
    dialog.pair_button.click()
    wait(app, lambda: "did not match" in dialog.message.text(), 10000)
    dialog.grab().save(str(OUT / "cluster-pairing-wrong-code.png"))
    dialog.code.setText(switch.code.text().replace("-", ""))
    dialog.pair_button.click()
    wait(app, lambda: dialog.message.text().startswith("Paired"), 10000)
    wait(app, lambda: switch.status.text().startswith("Paired"), 5000)
    dialog.grab().save(str(OUT / "cluster-pairing-done.png"))
    switch.grab().save(str(OUT / "cluster-share-switch-paired.png"))
    dialog.done(0)
    proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
