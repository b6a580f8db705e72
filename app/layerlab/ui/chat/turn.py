"""One turn of the chat service (send, regenerate, edit, continue) off the GUI thread.

The service blocks until the answer ends and calls back per piece from its thread; this
turns those calls into Qt signals (queued onto the GUI thread). It has the signals the
Workers panel follows an answer by: piece(str), finished(Finished), failed(str).

A pane runs its turns (and its context readings) on one thread it keeps (TurnThread),
started with the pane: starting a thread waits until the new thread first gets Python's GIL,
and right after an answer the worker formatting it and the context meter hold it in turns:
Send waited 30-140 ms for that.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal

from layerlab.core.chat.service import AnswerEvent, ChatService, Ended, Piece, Started
from layerlab.core.engine.client import Finished


class TurnThread:
    """The thread a pane's engine questions run on, one after another (its turns, its context
    readings); started at once (while nothing else keeps Python busy), so that starting a
    turn only hands it over."""

    def __init__(self) -> None:
        # Not a daemon thread (a pool's is joined at exit, after its turn): the answer must
        # reach the store, and a thread emitting Qt signals while Python finalizes crashes it.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-turn")
        self._pool.submit(lambda: None)  # its thread starts here

    def run(self, work: Callable[[], None]) -> Future:
        return self._pool.submit(work)

    def close(self, wait: bool) -> None:
        """No more turns; `wait`: until the thread has ended (its turn ended already)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


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
        thread: TurnThread,
        parent: QObject | None = None,
    ):
        """`thread`: where the turn runs (the pane's own)."""
        super().__init__(parent)
        self._service = service
        self._call = call
        self._thread = thread
        self._done: Future | None = None

    def start(self) -> None:
        self._done = self._thread.run(self._run)

    def cancel(self) -> None:
        self._service.stop()

    def wait(self, timeout: float = 5.0) -> bool:
        """Whether the turn has ended (waiting at most `timeout` seconds)."""
        if self._done is None:
            return True
        concurrent.futures.wait([self._done], timeout)
        return self._done.done()

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
