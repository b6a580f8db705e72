"""The window's share switch runs the worker as its child: when the window goes (kill -9), so
does the sharing, instead of going on unseen with nobody left to switch it off."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil

from tests.cluster.conftest import share_switch_args
from tests.conftest import free_port_pair

# A window in miniature: the real ShareProcess in a Qt application, switched on; it prints
# the worker's pid once the worker says it is sharing.
APP = """
import sys
from PySide6.QtCore import QCoreApplication
from layerlab.ui.cluster.share_process import ShareProcess
app = QCoreApplication([])
share = ShareProcess(sys.argv[1:])
share.sharing.connect(lambda _: print(share._proc.processId(), flush=True))
share.stopped.connect(lambda why: (print("stopped:", why, flush=True), app.quit()))
share.start()
app.exec()
"""


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_killing_the_app_ends_its_sharing(tmp_path):
    lan = free_port_pair()
    args = share_switch_args(tmp_path / "worker", lan)
    started: list[psutil.Process] = []
    app = subprocess.Popen(
        [sys.executable, "-c", APP, *args], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline().strip()
        assert line.isdigit(), f"the share switch did not come on: {line!r}"
        worker = psutil.Process(int(line))
        started.append(worker)
        assert not _refused(lan)  # sharing on the LAN port
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
        t0 = time.monotonic()
        worker.wait(10)  # raises TimeoutExpired if the worker went on sharing
        assert time.monotonic() - t0 < 5
        assert _refused(lan)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        if app.stdout is not None:
            app.stdout.close()
        for w in started:  # a worker that went on must not outlive the test
            if w.is_running():
                w.kill()
