"""One answer being streamed, off the GUI thread, cancellable between tokens."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from layerlab.core.engine.client import Delta, EngineClient, EngineRefused, EngineUnavailable


class ChatStream(QObject):
    piece = Signal(str)
    finished = Signal(object)  # client.Finished
    failed = Signal(str)

    def __init__(
        self,
        client: EngineClient,
        messages: list[dict],
        params: dict,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._client = client
        self._messages = messages
        self._params = params
        # Not a daemon: a thread still emitting Qt signals while Python finalizes crashes the
        # interpreter. It ends soon after cancel() or when the engine goes away.
        self._thread = threading.Thread(target=self._run, name="chat-stream")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._client.cancel()

    def wait(self, timeout: float = 5.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for ev in self._client.stream_chat(self._messages, **self._params):
                if isinstance(ev, Delta):
                    self.piece.emit(ev.text)
                else:
                    self.finished.emit(ev)
        except (EngineUnavailable, EngineRefused) as e:
            self.failed.emit(str(e))
        except Exception as e:  # never let a stream thread die silently
            self.failed.emit(f"Unexpected error: {e}")
