"""The `layerlab worker --share` child process, as one QObject with typed signals.

The window never loads llama.cpp: sharing runs the real worker as a child and reads its
JSON-line events (core/cluster/sharing.py) as they arrive.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, QProcess, Signal

from layerlab.core.cluster.worker_events import read_line


class ShareProcess(QObject):
    sharing = Signal(dict)  # {"address", "name", "fingerprint", ...}
    code_changed = Signal(str)
    event = Signal(dict)  # every event, for status lines (paired, serving, idle, refused)
    stopped = Signal(str)  # why, in words ("" when the person switched it off)

    def __init__(
        self,
        args: list[str] | None = None,
        program: str = sys.executable,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.program = program
        self.args = args if args is not None else []
        self.running = False
        self._stopping = False
        self._buf = b""
        self._tail: list[str] = []
        self._proc = QProcess(self)
        self._proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self._proc.readyReadStandardOutput.connect(self._read)
        self._proc.finished.connect(self._finished)
        self._proc.errorOccurred.connect(self._error)

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._tail.clear()
        self.running = True
        self._proc.start(
            self.program,
            # its stdin is our pipe: when this app goes, so does its sharing (--end-with-app)
            [
                "-m",
                "layerlab.cli.main",
                "worker",
                "--share",
                "--json-events",
                "--end-with-app",
                *self.args,
            ],
        )

    def stop(self) -> None:
        if not self.running:
            return
        self._stopping = True
        self._proc.terminate()
        if not self._proc.waitForFinished(5000):
            self._proc.kill()
            self._proc.waitForFinished(2000)

    def _read(self) -> None:
        self._buf += bytes(self._proc.readAllStandardOutput().data())
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            text, ev = read_line(raw.decode("utf-8", "replace").strip())
            if text:
                self._tail = [*self._tail[-4:], text]
            if ev is None:
                continue
            kind = ev.get("event")
            if kind == "sharing":
                self.sharing.emit(ev)
            elif kind == "pairing_code":
                self.code_changed.emit(str(ev.get("code", "")))
            self.event.emit(ev)

    def _finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self.running = False
        why = (
            ""
            if self._stopping
            else (f"The worker stopped (exit code {code}). " + " ".join(self._tail[-2:])).strip()
        )
        self.stopped.emit(why)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.running = False
            self.stopped.emit(f"Could not start the worker: {self._proc.errorString()}")
