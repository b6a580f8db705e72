"""One turn of the chat service (send, regenerate, edit, continue) off the GUI thread.

The service blocks until the answer ends and calls back per piece from its thread; this
turns those calls into Qt signals (queued onto the GUI thread). It has the signals the
Workers panel follows an answer by: piece(str), finished(Finished), failed(str).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from layerlab.core.chat.service import AnswerEvent, ChatService, Ended, Piece, Started
from layerlab.core.engine.client import Finished


class ServiceTurn(QObject):
    started = Signal(object)  # the store's Message (the answer, empty or continued)
    piece = Signal(str)
    finished = Signal(object)  # client.Finished, built from how the answer ended
    ended = Signal(object)  # the store's Message as it ended
    failed = Signal(object)  # the exception: ContextFull, NoChatTemplate, NoModel, ...

    def __init__(
        self,
        service: ChatService,
        call: Callable[[Callable[[AnswerEvent], None]], object],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._service = service
        self._call = call
        # Not a daemon: the answer must reach the store, and a thread still emitting Qt
        # signals while Python finalizes crashes the interpreter.
        self._thread = threading.Thread(target=self._run, name="chat-turn")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._service.stop()

    def wait(self, timeout: float = 5.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _event(self, ev: AnswerEvent) -> None:
        if isinstance(ev, Piece):
            self.piece.emit(ev.text)
        elif isinstance(ev, Started):
            self.started.emit(ev.message)
        elif isinstance(ev, Ended):
            m = ev.message
            self.finished.emit(
                Finished(
                    m.finish if m.finish in ("stop", "length") else "stop",
                    stopped=m.finish == "stopped",
                )
            )
            self.ended.emit(m)

    def _run(self) -> None:
        try:
            self._call(self._event)
        except Exception as e:  # words for the pane; never a thread dying silently
            self.failed.emit(e)
