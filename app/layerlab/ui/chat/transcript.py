"""The conversation as the person reads it: Markdown rendered (model text never as HTML),
a stats line and the actions under each message, the branch switcher "< 2/3 >".

Links are handled here, never followed by the view itself: web links open in the browser
only when clicked, `copy:` copies a code block, `act:` asks the pane to act on a message,
`more:` shows earlier messages.

The GUI thread never does heavy work here, however long the conversation or a message:
- the pane hands it only the newest messages (SHOWN_AT_FIRST; "Show earlier messages" asks
  for more), so a 5,000-message conversation opens as fast as a short one;
- a finished message is rendered once and kept (by id and content); the newest ones are
  rendered here within a few milliseconds, the rest (and any long one: a 5,000-line code
  block, a 1 MB answer) by a worker thread while a placeholder stands in;
- the answer being written is rendered in pieces: what is settled (up to the last blank line
  outside a code block) once, and only the paragraph still growing again at each paint.
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from layerlab.core.chat.render import as_text, code_blocks, plain_html, to_html
from layerlab.core.chat.store import Message

NOTE_STYLE = "color:#a33; font-style: italic;"
STATS_STYLE = "color:#6e7781; font-size: small;"
PLACEHOLDER_STYLE = "color:#6e7781; font-style: italic;"

SHOWN_AT_FIRST = 30  # messages laid out when a conversation opens
SHOW_MORE = 50  # messages each "Show earlier messages" adds
RENDER_HERE_CHARS = 4_000  # a message this short may be rendered on the GUI thread
RENDER_HERE_S = 0.02  # GUI-thread time per layout for rendering, newest message first
READING_WIDTH = 860  # pixels of text at most: lines a person can follow, centred beyond
RELAYOUT_MS = 60  # the worker's renders are laid out together, at most this often
KEPT_RENDERS = 2_000  # rendered messages kept (the rest are rendered again when shown)
LIVE_TAIL_CHARS = 6_000  # a growing paragraph longer than this is shown as plain text
SLOW_TAIL_S = 0.25  # ... and repainted at most four times a second


def _actions(m: Message, position: tuple[int, int]) -> str:
    links = []
    i, n = position
    switcher = ""
    if n > 1:  # the branch switcher, at the text's own size: it is clicked often
        switcher = (
            f'<a href="act:prev:{m.id}" style="text-decoration:none;">&nbsp;&lt;&nbsp;</a>'
            f"<b>{i}/{n}</b>"
            f'<a href="act:next:{m.id}" style="text-decoration:none;">&nbsp;&gt;&nbsp;</a>'
            "&nbsp;&nbsp;"
        )
    links.append(f'<a href="act:copy:{m.id}">Copy</a>')
    if m.role == "user":
        links.append(f'<a href="act:edit:{m.id}">Edit</a>')
    else:
        links.append(f'<a href="act:regenerate:{m.id}">Regenerate</a>')
        if m.finish in ("length", "stopped", "error"):
            links.append(f'<a href="act:continue:{m.id}">Continue</a>')
    links.append(f'<a href="act:delete:{m.id}">Delete</a>')
    return f'<p>{switcher}<span style="{STATS_STYLE}">' + " · ".join(links) + "</span></p>"


def _who(m: Message) -> str:
    return f"<p><b>{'You' if m.role == 'user' else 'Assistant'}</b></p>"


def _under(m: Message, position: tuple[int, int], live: bool) -> str:
    out = []
    if m.note:
        out.append(f'<p style="{NOTE_STYLE}">[{html.escape(m.note)}]</p>')
    elif m.finish == "stopped":
        out.append(f'<p style="{NOTE_STYLE}">[stopped]</p>')
    if m.stats and m.role == "assistant":
        out.append(f'<p style="{STATS_STYLE}">{html.escape(m.stats.line())}</p>')
    if not live:
        out.append(_actions(m, position))
    return "".join(out)


def message_html(m: Message, position: tuple[int, int] = (1, 1), live: bool = False) -> str:
    body = plain_html(m.content) if m.role == "user" else to_html(m.content)
    body = body.replace('href="copy:', f'href="copy:{m.id}:')
    return _who(m) + body + _under(m, position, live)


def placeholder_html(m: Message, position: tuple[int, int]) -> str:
    """What stands in for a message while a worker renders it: a short one as plain text (it
    takes about the room it will take), a long one named by its size."""
    if len(m.content) <= RENDER_HERE_CHARS:
        return _who(m) + plain_html(m.content) + _under(m, position, False)
    lines = m.content.count("\n") + 1
    what = f"{lines:,} lines" if lines > 1 else f"{len(m.content):,} characters"
    note = f'<p style="{PLACEHOLDER_STYLE}">Formatting a long message ({what})…</p>'
    return _who(m) + note + _under(m, position, False)


def _plain_pre(text: str) -> str:
    return f'<pre style="font-family: monospace;">{html.escape(as_text(text))}</pre>'


def _key(m: Message, position: tuple[int, int]) -> tuple:
    # str hashes are cached by Python: a 1 MB message is hashed once, not at every layout
    stats = m.stats.line() if m.stats else ""
    return (m.id, m.role, hash(m.content), len(m.content), m.finish, m.note, stats, position)


class _Renderer(QObject):
    """Renders long messages in one worker thread; the answer comes back as a signal."""

    done = Signal(object, str)  # cache key, HTML

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-render")
        self._asked: set[tuple] = set()
        self._closed = threading.Event()
        # The first render imports Pygments' lexers and builds the parser (~0.1-0.3 s): here,
        # not on the GUI thread when the first conversation opens.
        self._pool.submit(to_html, "```python\nx = 1\n```\n| a |\n|---|\n| 1 |\n")

    def ask(self, key: tuple, m: Message, position: tuple[int, int]) -> None:
        if key in self._asked or self._closed.is_set():
            return
        self._asked.add(key)
        self._pool.submit(self._run, key, m, position)

    def _run(self, key: tuple, m: Message, position: tuple[int, int]) -> None:
        if self._closed.is_set():
            return
        out = message_html(m, position)
        if not self._closed.is_set():
            self.done.emit(key, out)

    def answered(self, key: tuple) -> None:
        self._asked.discard(key)

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _LiveAnswer:
    """The answer being written, as laid out so far: its settled part and its growing tail."""

    def __init__(self, m: Message, start: int):
        self.message = m
        self.start = start  # document position where the answer begins
        self.tail_start = start  # document position where the growing paragraph begins
        self.settled = 0  # characters of the answer laid out for good
        self.code_n = 0  # code blocks in the settled part (numbers the copy links)
        self.scanned = 0  # characters looked at for a place to settle
        self.in_fence = False
        self.boundary = 0  # the last blank line outside a code block
        self.tail_shown = 0.0  # when a long tail was last repainted

    def scan(self, text: str) -> None:
        """Find the last paragraph break outside a code block, looking only at new lines."""
        while True:
            nl = text.find("\n", self.scanned)
            if nl < 0:
                return
            line = text[self.scanned : nl]
            stripped = line.lstrip()
            if stripped.startswith(("```", "~~~")):
                self.in_fence = not self.in_fence
                if not self.in_fence:
                    self.boundary = nl + 1  # a closed code block is settled
            elif not stripped and not self.in_fence:
                self.boundary = nl + 1
            self.scanned = nl + 1


class TranscriptView(QTextBrowser):
    actionRequested = Signal(str, str)  # what ("edit", "regenerate", ...), message id
    earlierRequested = Signal()  # "Show earlier messages" was clicked

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)  # every link goes through _clicked
        self.setOpenExternalLinks(False)
        # Each paint replaces the growing paragraph: an undo history would keep every one.
        self.setUndoRedoEnabled(False)
        self.setPlaceholderText("Ask something. Ctrl+Enter sends.")
        self.anchorClicked.connect(self._clicked)
        self._texts: dict[str, str] = {}  # message id -> its text, for Copy
        self._rows: list[tuple[Message, tuple[int, int]]] = []
        self._more_above = False  # earlier messages exist that are not shown
        self._kept: OrderedDict[tuple, str] = OrderedDict()  # rendered messages
        self._live: _LiveAnswer | None = None
        self._shown: list[tuple] = []  # keys of the messages laid out, oldest first
        self._starts: list[int] = []  # where each laid-out message begins (and the end)
        self._placeholders: set[int] = set()  # laid-out messages waiting for the worker
        self._renderer = _Renderer(self)
        self._renderer.done.connect(self._rendered)
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(RELAYOUT_MS)
        self._relayout.timeout.connect(self._lay_out_again)
        # How a clicked web link is opened: the system's browser (tests hand in their own)
        self.open_link = QDesktopServices.openUrl

    def resizeEvent(self, event) -> None:
        # a comfortable reading width: on a wide window the text keeps to the middle
        super().resizeEvent(event)
        self._keep_reading_width()

    def _keep_reading_width(self) -> None:
        side = max(0, (self.viewport().width() - READING_WIDTH) // 2)
        root = self.document().rootFrame()
        f = root.frameFormat()
        if f.leftMargin() != side or f.rightMargin() != side:
            f.setLeftMargin(side)
            f.setRightMargin(side)
            root.setFrameFormat(f)

    @property
    def pending_renders(self) -> int:
        """Messages on screen still waiting for the worker (a placeholder shows)."""
        return sum(1 for k in self._shown if k not in self._kept)

    def show_messages(
        self, rows: list[tuple[Message, tuple[int, int]]], more_above: bool = False
    ) -> None:
        """The conversation's newest messages as stored (`more_above`: earlier ones exist).
        Messages already on screen stay as they are laid out: a turn that adds a question
        and an answer lays out only those two, however long the conversation."""
        self._texts = {m.id: m.content for m, _ in rows}
        keys = [_key(m, pos) for m, pos in rows]
        same = 0
        if more_above == self._more_above and self._starts:
            while same < min(len(keys), len(self._shown)) and keys[same] == self._shown[same]:
                same += 1
        self._rows = rows
        self._more_above = more_above
        self._live = None
        if same == 0:
            self._lay_out()
        else:
            self._redo_from(same)
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.ensureCursorVisible()

    def shutdown(self) -> None:
        self._renderer.close()

    def _html(self, m: Message, pos: tuple[int, int], key: tuple, until: float) -> str | None:
        """The message rendered; None: the worker renders it (a placeholder stands in)."""
        out = self._kept.get(key)
        if out is not None:
            self._kept.move_to_end(key)
            return out
        if len(m.content) <= RENDER_HERE_CHARS and time.perf_counter() < until:
            return self._keep(key, message_html(m, pos))
        self._renderer.ask(key, m, pos)
        return None

    def _lay_out(self) -> None:
        """Lay out the shown messages from scratch, the newest rendered first."""
        until = time.perf_counter() + RENDER_HERE_S
        live = self._live
        for m, pos in reversed(self._rows):  # the newest first: it is what the person sees
            self._html(m, pos, _key(m, pos), until)
        self.clear()
        self._keep_reading_width()
        cursor = QTextCursor(self.document())
        if self._more_above:
            cursor.insertHtml('<p align="center"><a href="more:">Show earlier messages</a></p>')
        self._starts, self._shown, self._placeholders = [cursor.position()], [], set()
        self._append(cursor, 0, until)
        if live is not None:
            self.start_live(live.message)

    def _append(self, cursor: QTextCursor, first: int, until: float) -> None:
        """Lay out rows[first:] at the end; `_starts[i]` is where message i begins."""
        for m, pos in self._rows[first:]:
            key = _key(m, pos)
            cursor.movePosition(QTextCursor.MoveOperation.End)
            if self._shown or self._more_above:
                cursor.insertBlock()  # a message never runs on in its predecessor's paragraph
            out = self._html(m, pos, key, until)
            if out is None:
                self._placeholders.add(len(self._shown))
                out = placeholder_html(m, pos)
            cursor.insertHtml(out)
            self._shown.append(key)
            self._starts.append(self._end())

    def _end(self) -> int:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor.position()

    def _keep(self, key: tuple, out: str) -> str:
        self._kept[key] = out
        while len(self._kept) > KEPT_RENDERS:
            self._kept.popitem(last=False)
        return out

    def _rendered(self, key: tuple, out: str) -> None:
        self._renderer.answered(key)
        self._keep(key, out)
        if not self._relayout.isActive() and key in self._shown:
            self._relayout.start()  # more renders may follow: lay them out together

    def _lay_out_again(self) -> None:
        """Put what the worker rendered in place of the placeholders, keeping the scroll."""
        done = [i for i in self._placeholders if self._shown[i] in self._kept]
        if not done:
            return
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 80
        value = bar.value()
        self._redo_from(min(done))
        bar.setValue(bar.maximum() if at_end else value)

    def _redo_from(self, first: int) -> None:
        """Lay out messages first.. again (and the answer being written after them)."""
        live = self._live
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._starts[first])
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        del self._starts[first + 1 :], self._shown[first:]
        self._placeholders = {i for i in self._placeholders if i < first}
        self._append(cursor, first, time.perf_counter() + RENDER_HERE_S)
        if live is not None:
            self.start_live(live.message)

    # -- the answer being written ------
    def start_live(self, m: Message) -> None:
        """The answer being written goes at the end from here."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if self._shown or self._more_above:
            cursor.insertBlock()
        self._live = _LiveAnswer(m, cursor.position())
        cursor.insertHtml(_who(m))
        self._live.tail_start = cursor.position()
        self.update_live(m)

    def update_live(self, m: Message) -> None:
        live = self._live
        if live is None:
            return
        live.message = m
        self._texts[m.id] = m.content
        text = m.content
        live.scan(text)
        cursor = QTextCursor(self.document())
        if live.boundary > live.settled:
            piece = text[live.settled : live.boundary]
            if len(piece) <= RENDER_HERE_CHARS:
                out = to_html(piece, live.code_n)
                live.code_n += out.count('href="copy:')
            else:  # formatted when the answer ends (by the worker: it is long)
                out = _plain_pre(piece)
            self._replace_tail(cursor, out.replace('href="copy:', f'href="copy:{m.id}:'))
            live.tail_start = cursor.position()
            live.settled = live.boundary
            live.tail_shown = 0.0
        tail = text[live.settled :]
        if len(tail) <= LIVE_TAIL_CHARS:
            out = to_html(tail, live.code_n).replace('href="copy:', f'href="copy:{m.id}:')
        else:
            now = time.monotonic()
            if now - live.tail_shown < SLOW_TAIL_S:
                return
            live.tail_shown = now
            out = _plain_pre(tail)
        self._replace_tail(cursor, out)
        bar = self.verticalScrollBar()
        if bar.value() >= bar.maximum() - 80:  # follow the answer unless the person scrolled up
            bar.setValue(bar.maximum())

    def _replace_tail(self, cursor: QTextCursor, out: str) -> None:
        assert self._live is not None
        cursor.setPosition(self._live.tail_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if out:
            cursor.insertHtml(out)

    def _clicked(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("copy:"):
            _, mid, n = text.split(":", 2)
            blocks = code_blocks(self._texts.get(mid, ""))
            if n.isdigit() and int(n) < len(blocks):
                QGuiApplication.clipboard().setText(blocks[int(n)])
        elif text.startswith("more:"):
            self.earlierRequested.emit()
        elif text.startswith("act:"):
            _, what, mid = text.split(":", 2)
            if what == "copy":
                QGuiApplication.clipboard().setText(self._texts.get(mid, ""))
            else:
                self.actionRequested.emit(what, mid)
        elif url.scheme() in ("http", "https", "mailto"):
            self.open_link(url)
