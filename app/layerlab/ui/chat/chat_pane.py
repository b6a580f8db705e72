"""The chat pane: transcript, input, Send and Stop. Keeps the conversation whatever happens
to the engine; tokens are painted at a human rate, not one repaint per token."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from layerlab.core.chat.conversation import Conversation, Message
from layerlab.core.chat.throughput import AnswerClock, Rates
from layerlab.core.engine.client import EngineClient, Finished
from layerlab.ui.chat.chat_stream import ChatStream
from layerlab.ui.chat.message_input import MessageInput
from layerlab.ui.chat.transcript import TranscriptView

PAINT_INTERVAL_MS = 33  # ~30 repaints a second, however fast tokens arrive


class ChatPane(QWidget):
    ratesChanged = Signal(object)  # Rates
    busyChanged = Signal(bool)
    answerStarted = Signal(object)  # the ChatStream, for views that follow an answer

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.conversation = Conversation()
        self._client: EngineClient | None = None
        self._stream: ChatStream | None = None
        self._answer: Message | None = None
        self._clock: AnswerClock | None = None
        self._pending: list[str] = []
        self.params: dict = {"temperature": 0.7, "max_tokens": 1024}

        self.transcript = TranscriptView()
        self.input = MessageInput()
        self.send_button = QPushButton("Send")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.send_button.setEnabled(False)
        self.send_button.setToolTip("Ctrl+Enter")

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.input)
        bl.addLayout(buttons)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.transcript)
        split.addWidget(bottom)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

        self._paint = QTimer(self)
        self._paint.setInterval(PAINT_INTERVAL_MS)
        self._paint.timeout.connect(self._flush)

        self.send_button.clicked.connect(self.send)
        self.input.sendRequested.connect(self.send)
        self.stop_button.clicked.connect(self.stop)

    # -- engine availability ------------------------------------------------------------
    def set_client(self, client: EngineClient | None) -> None:
        self._client = client
        self.send_button.setEnabled(client is not None and self._stream is None)

    @property
    def busy(self) -> bool:
        return self._stream is not None

    # -- a turn ---------------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self._client is None or self._stream is not None:
            return
        self.input.clear()
        self.conversation.add_user(text)
        self.transcript.add_message("You", text)
        messages = self.conversation.for_engine()
        self._answer = self.conversation.start_answer()
        self.transcript.add_message("LayerLab", "")
        self._clock = AnswerClock()
        self._stream = ChatStream(self._client, messages, dict(self.params), self)
        self._stream.piece.connect(self._on_piece)
        self._stream.finished.connect(self._on_finished)
        self._stream.failed.connect(self._on_failed)
        self._set_busy(True)
        self._paint.start()
        self.answerStarted.emit(self._stream)
        self._stream.start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def shutdown(self, timeout: float = 3.0) -> None:
        """At close: stop the answer in progress and let its thread end."""
        stream = self._stream
        if stream is not None:
            stream.cancel()
            stream.wait(timeout)

    def _on_piece(self, text: str) -> None:
        self._pending.append(text)
        if self._clock:
            self._clock.piece()

    def _flush(self) -> None:
        if self._pending and self._answer is not None:
            text = "".join(self._pending)
            self._pending.clear()
            self._answer.content += text
            self.transcript.append_text(text)
        if self._clock:
            self.ratesChanged.emit(self._clock.live())

    def _on_finished(self, done: Finished) -> None:
        self._flush()
        rates: Rates | None = self._clock.finish(done.timings) if self._clock else None
        if self._answer is not None:
            self._answer.finish = "stopped" if done.stopped else (done.finish_reason or "stop")
            self._answer.timings = done.timings
        if done.stopped:
            self.transcript.add_note("stopped")
        self._end_turn()
        if rates:
            self.ratesChanged.emit(rates)

    def _on_failed(self, message: str) -> None:
        self._flush()
        if self._answer is not None:
            self._answer.finish = f"error: {message}"
        self.transcript.add_note(f"interrupted: {message}")
        self._end_turn()

    def _end_turn(self) -> None:
        self._paint.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            # Its thread emitted its last signal and is returning; no join on the GUI thread.
            stream.deleteLater()
        self._answer = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.send_button.setEnabled(not busy and self._client is not None)
        self.busyChanged.emit(busy)
