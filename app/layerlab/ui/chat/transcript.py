"""The conversation as the person reads it: Markdown rendered (model text never as HTML),
a stats line and the actions under each message, the branch switcher "< 2/3 >".

Links are handled here, never followed by the view itself: web links open in the browser
only when clicked, `copy:` copies a code block, `act:` asks the pane to act on a message.
Finished messages are rendered once and kept; only the answer being written is rendered
again, at the pane's paint rate.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from layerlab.core.chat.render import code_blocks, plain_html, to_html
from layerlab.core.chat.store import Message

NOTE_STYLE = "color:#a33; font-style: italic;"
STATS_STYLE = "color:#6e7781; font-size: small;"


def _actions(m: Message, position: tuple[int, int]) -> str:
    links = []
    i, n = position
    if n > 1:
        links.append(
            f'<a href="act:prev:{m.id}">&lt;</a> {i}/{n} <a href="act:next:{m.id}">&gt;</a>'
        )
    links.append(f'<a href="act:copy:{m.id}">Copy</a>')
    if m.role == "user":
        links.append(f'<a href="act:edit:{m.id}">Edit</a>')
    else:
        links.append(f'<a href="act:regenerate:{m.id}">Regenerate</a>')
        if m.finish in ("length", "stopped", "error"):
            links.append(f'<a href="act:continue:{m.id}">Continue</a>')
    links.append(f'<a href="act:delete:{m.id}">Delete</a>')
    return f'<p style="{STATS_STYLE}">' + " · ".join(links) + "</p>"


def message_html(m: Message, position: tuple[int, int] = (1, 1), live: bool = False) -> str:
    who = "You" if m.role == "user" else "Assistant"
    body = plain_html(m.content) if m.role == "user" else to_html(m.content)
    body = body.replace('href="copy:', f'href="copy:{m.id}:')
    out = [f"<p><b>{who}</b></p>", body]
    if m.note:
        out.append(f'<p style="{NOTE_STYLE}">[{html.escape(m.note)}]</p>')
    elif m.finish == "stopped":
        out.append(f'<p style="{NOTE_STYLE}">[stopped]</p>')
    if m.stats and m.role == "assistant":
        out.append(f'<p style="{STATS_STYLE}">{html.escape(m.stats.line())}</p>')
    if not live:
        out.append(_actions(m, position))
    return "".join(out)


class TranscriptView(QTextBrowser):
    actionRequested = Signal(str, str)  # what ("edit", "regenerate", ...), message id

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)  # every link goes through _clicked
        self.setOpenExternalLinks(False)
        self.setPlaceholderText("Ask something. Ctrl+Enter sends.")
        self.anchorClicked.connect(self._clicked)
        self._texts: dict[str, str] = {}  # message id -> its text, for Copy
        self._live_start: int | None = None
        # How a clicked web link is opened: the system's browser (tests hand in their own)
        self.open_link = QDesktopServices.openUrl

    def show_messages(self, rows: list[tuple[Message, tuple[int, int]]]) -> None:
        """The whole conversation, as stored."""
        self._texts = {m.id: m.content for m, _ in rows}
        self._live_start = None
        self.setHtml("".join(message_html(m, pos) for m, pos in rows))
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.ensureCursorVisible()

    def start_live(self, m: Message) -> None:
        """The answer being written goes at the end from here."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._live_start = cursor.position()
        self.update_live(m)

    def update_live(self, m: Message) -> None:
        if self._live_start is None:
            return
        self._texts[m.id] = m.content
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._live_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        cursor.insertHtml(message_html(m, live=True))
        bar = self.verticalScrollBar()
        if bar.value() >= bar.maximum() - 80:  # follow the answer unless the person scrolled up
            bar.setValue(bar.maximum())

    def _clicked(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("copy:"):
            _, mid, n = text.split(":", 2)
            blocks = code_blocks(self._texts.get(mid, ""))
            if n.isdigit() and int(n) < len(blocks):
                QGuiApplication.clipboard().setText(blocks[int(n)])
        elif text.startswith("act:"):
            _, what, mid = text.split(":", 2)
            if what == "copy":
                QGuiApplication.clipboard().setText(self._texts.get(mid, ""))
            else:
                self.actionRequested.emit(what, mid)
        elif url.scheme() in ("http", "https", "mailto"):
            self.open_link(url)
