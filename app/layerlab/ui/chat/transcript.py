"""The conversation as the person reads it. Text goes in as plain text, never as HTML."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget


class TranscriptView(QTextBrowser):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenExternalLinks(False)
        self.setPlaceholderText("Ask something. Ctrl+Enter sends.")
        self._who = QTextCharFormat()
        self._who.setFontWeight(QFont.Weight.Bold)
        self._body = QTextCharFormat()
        self._note = QTextCharFormat()
        self._note.setForeground(QColor("#a33"))
        self._note.setFontItalic(True)

    def _append(self, text: str, fmt: QTextCharFormat) -> None:
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text, fmt)
        self.setTextCursor(cursor)
        self.ensureCursorVisible()

    def add_message(self, who: str, text: str) -> None:
        if not self.document().isEmpty():
            self._append("\n\n", self._body)
        self._append(f"{who}\n", self._who)
        self._append(text, self._body)

    def append_text(self, text: str) -> None:
        self._append(text, self._body)

    def add_note(self, text: str) -> None:
        self._append(f"\n[{text}]", self._note)
