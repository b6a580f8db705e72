"""The conversation as the person reads it: Markdown rendered (model text never as HTML),
a stats line and the actions under each message, the branch switcher "< 2/3 >".

Links are handled here, never followed by the view itself: web links open in the browser
only when clicked, `copy:` copies a code block, `act:` asks the pane to act on a message,
`more:` shows earlier messages.

The GUI thread never does heavy work here, however long the conversation or a message:
- the pane hands it only the newest messages (SHOWN_AT_FIRST; "Show earlier messages" asks
  for more), so a 5,000-message conversation opens as fast as a short one;
- earlier messages are formatted by the worker and put in above, a few per turn of the event
  loop (EARLIER_SLICE), the newest first, with the text the person is reading held in place;
- a finished message is rendered once and kept (by id and content); the newest ones are
  rendered here within a few milliseconds, the rest (and any long one: a 5,000-line code
  block, a 1 MB answer) by a worker thread while a placeholder stands in; what the worker
  sends back replaces its placeholder where it stands, a few per turn, not the messages below;
- a long message (an answer that just ended, one shown again) goes in in pieces of about
  FILL_CHARS, one per turn (putting 50k characters in at once took ~45 ms here): the worker
  renders it in parts of whole top-level blocks and parses each part into a small document
  of its own. Never the whole at once: Qt's parser holds Python's GIL for the whole call, and
  parsing 50k characters (~25 ms) froze the GUI thread as surely as doing it there. The parts
  joined make the same document as the whole put in at once;
- the answer being written is rendered in pieces: what is settled (up to the last blank line
  outside a code block) once, and only the paragraph still growing again at each paint.
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QCoreApplication, QObject, QPoint, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from layerlab.core.chat.render import as_text, code_blocks, plain_html, to_html, to_html_parts
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
EARLIER_SLICE = 5  # messages put in per turn of the event loop at most (~0.6 ms each) ...
SLICE_S = 0.006  # ... fewer while a slice takes longer than this (a long transcript)
FILL_CHARS = 4_000  # a long message goes in in pieces of about this many characters (~2.5 ms)
SHOW_EARLIER_LINK = '<p align="center"><a href="more:">Show earlier messages</a></p>'


# A message rendered: its HTML, or a long one's parts (it goes in piece by piece)
Html = str | tuple[str, ...]


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


def message_parts(
    m: Message, position: tuple[int, int] = (1, 1), part_chars: int = FILL_CHARS
) -> tuple[str, ...]:
    """`message_html(m, position)` in parts of about `part_chars` of text (whole top-level
    blocks; a person's own message is one paragraph: one part), joined the same HTML."""
    user = m.role == "user"
    parts = [plain_html(m.content)] if user else to_html_parts(m.content, part_chars)
    parts = [p.replace('href="copy:', f'href="copy:{m.id}:') for p in parts]
    parts[0] = _who(m) + parts[0]
    parts[-1] += _under(m, position, False)
    return tuple(parts)


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


def _goes_in_pieces(key: tuple) -> bool:
    """A message too long to lay out in one go on the GUI thread (key[3]: its length)."""
    return key[3] > RENDER_HERE_CHARS


def parse_html(out: str) -> QTextDocument:
    """HTML parsed into a document of its own (one C++ call: Python waits meanwhile)."""
    doc = QTextDocument()
    doc.setUndoRedoEnabled(False)
    QTextCursor(doc).insertHtml(out)
    return doc


class _Pieces:
    """A long message's parts (whole top-level blocks), each parsed by the worker into a
    document of its own, to go in one per turn. Each part begins with a paragraph, a heading
    or a quote: put in after the one before, in a new block with its first block's formats,
    the parts make the same document as the whole HTML put in at once."""

    def __init__(self, parts: tuple[str, ...], parse=parse_html):
        # A part's last block would keep the newline after its closing tag (as a space):
        # in the whole, that newline falls between two blocks and is dropped.
        self.docs = [parse(p.rstrip()) for p in parts]
        app = QCoreApplication.instance()
        for doc in self.docs:
            if app is not None:  # read (and let go of) on the GUI thread from here
                doc.moveToThread(app.thread())

    @property
    def count(self) -> int:
        return len(self.docs)

    def size(self, n: int) -> int:
        return self.docs[n].characterCount()

    def put_in(self, n: int, cursor: QTextCursor) -> None:
        """Put piece n in at the cursor: the first where the message begins, the others at
        the end of the one before."""
        doc = self.docs[n]
        if n:
            first = doc.begin()
            cursor.insertBlock(first.blockFormat(), first.charFormat())
        cursor.insertFragment(QTextDocumentFragment(doc))


class _Filling:
    """A long message going in: the pieces put in so far."""

    def __init__(self, pieces: _Pieces):
        self.pieces, self.next = pieces, 1


class _Renderer(QObject):
    """Renders long messages in one worker thread; the answer comes back as a signal.
    `parse`: how a long message's parts are parsed into documents (tests count the calls)."""

    # cache key, HTML (a long one: its parts), its _Pieces (a long one) or None
    done = Signal(object, object, object)

    def __init__(self, parent: QObject | None = None, parse=parse_html):
        super().__init__(parent)
        self._parse = parse
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-render")
        self._asked: set[tuple] = set()
        self._closed = threading.Event()
        # The first render imports Pygments' lexers and builds the parser (~0.1-0.3 s): here,
        # not on the GUI thread when the first conversation opens.
        self._pool.submit(to_html, "```python\nx = 1\n```\n| a |\n|---|\n| 1 |\n")

    def ask(
        self, key: tuple, m: Message, position: tuple[int, int], out: Html | None = None
    ) -> None:
        """Render `m` (`out`: rendered already); a long one in parts, each parsed."""
        if key in self._asked or self._closed.is_set():
            return
        self._asked.add(key)
        self._pool.submit(self._run, key, m, position, out)

    def _run(self, key: tuple, m: Message, position: tuple[int, int], out: Html | None) -> None:
        if self._closed.is_set():
            return
        pieces = None
        if _goes_in_pieces(key):
            if not isinstance(out, tuple):
                out = message_parts(m, position)
            pieces = _Pieces(out, self._parse)
        elif out is None:
            out = message_html(m, position)
        if not self._closed.is_set():
            self.done.emit(key, out, pieces)

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


class _HeldView:
    """Where the person's view is, held across edits above it: the document position at the
    top of the view and its height on screen (or: the view follows the end)."""

    def __init__(self, pos: int, y: int, follow_end: bool):
        self.pos, self.y, self.follow_end = pos, y, follow_end

    def moved(self, at: int, removed: int, inserted: int) -> None:
        if self.pos >= at + removed:
            self.pos += inserted - removed
        elif self.pos > at:
            self.pos = at  # inside what was replaced: its start


class TranscriptView(QTextBrowser):
    actionRequested = Signal(str, str)  # what ("edit", "regenerate", ...), message id
    earlierRequested = Signal()  # "Show earlier messages" was clicked

    def __init__(self, parent: QWidget | None = None, parse=parse_html):
        """`parse`: how the worker parses a long message's parts (tests count the calls)."""
        super().__init__(parent)
        self.setOpenLinks(False)  # every link goes through _clicked
        self.setOpenExternalLinks(False)
        # Each paint replaces the growing paragraph: an undo history would keep every one.
        self.setUndoRedoEnabled(False)
        self.setPlaceholderText("Ask something. Ctrl+Enter sends.")
        self.anchorClicked.connect(self._clicked)
        self._texts: dict[str, str] = {}  # message id -> its text, for Copy
        self._rows: list[tuple[Message, tuple[int, int]]] = []  # laid out, oldest first
        self._above: list[tuple[Message, tuple[int, int]]] = []  # still to put in above them
        self._more_above = False  # earlier messages exist that are not shown (nor waiting)
        self._link = False  # the document begins with "Show earlier messages"
        self._kept: OrderedDict[tuple, Html] = OrderedDict()  # rendered messages
        self._live: _LiveAnswer | None = None
        self._shown: list[tuple] = []  # keys of the messages laid out, oldest first
        self._starts: list[int] = []  # where each laid-out message begins (and the end)
        self._placeholders: set[tuple] = set()  # laid-out messages waiting for the worker
        self._pieces: dict[tuple, _Pieces] = {}  # long placeholders' pieces, ready to go in
        self._filling: dict[tuple, _Filling] = {}  # long messages partly put in
        self._renderer = _Renderer(self, parse)
        self._renderer.done.connect(self._rendered)
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.timeout.connect(self._lay_out_again)
        self._earlier = QTimer(self)  # puts in the next slice of earlier messages
        self._earlier.setSingleShot(True)
        self._earlier.setInterval(0)
        self._earlier.timeout.connect(self._put_in_earlier)
        self._slice = EARLIER_SLICE  # messages per slice now (fewer if slices take long)
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
        """Messages on screen not (all) formatted yet: a placeholder shows, or a long one is
        still going in."""
        waiting = self._placeholders.union(self._filling)
        return sum(1 for k in self._shown if k not in self._kept or k in waiting)

    @property
    def earlier_waiting(self) -> int:
        """Earlier messages asked for ("Show earlier messages") and not put in yet."""
        return len(self._above)

    def show_messages(
        self, rows: list[tuple[Message, tuple[int, int]]], more_above: bool = False
    ) -> None:
        """The conversation's newest messages as stored (`more_above`: earlier ones exist).
        Messages already on screen stay as they are laid out: a turn that adds a question
        and an answer lays out only those two, however long the conversation; messages
        added in front of them ("Show earlier") are put in above, a few per turn."""
        self._texts = {m.id: m.content for m, _ in rows}
        keys = [_key(m, pos) for m, pos in rows]
        self._live = None
        off = self._laid_out_at(keys, more_above)
        if off is None:
            self._rows, self._above, self._more_above = rows, [], more_above
            self._lay_out()
        else:
            same = 0
            while same < min(len(keys) - off, len(self._shown)):
                if keys[off + same] != self._shown[same]:
                    break
                same += 1
            below_unchanged = same == len(self._shown) == len(keys) - off
            self._rows, self._more_above = rows[off:], more_above
            self._redo_from(same)
            self._ask_for_earlier(rows[:off])
            if off and below_unchanged:
                return  # only earlier messages come: the person's view stays as it is
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.ensureCursorVisible()

    def _laid_out_at(self, keys: list[tuple], more_above: bool) -> int | None:
        """Where the messages laid out now begin among `keys`; None: lay out anew."""
        if not self._shown or not self._starts:
            return None
        try:
            off = keys.index(self._shown[0])
        except ValueError:
            return None
        if not self._link and (off or more_above):
            return None  # earlier messages (or the link) would go above the first message
        return off

    def shutdown(self) -> None:
        self._earlier.stop()
        self._relayout.stop()
        self._renderer.close()

    def _html(self, m: Message, pos: tuple[int, int], key: tuple, until: float) -> str | None:
        """The message rendered, to go in at once; None: a placeholder stands in while the
        worker renders it (a long one: and cuts it into pieces, to go in one per turn)."""
        out = self._kept.get(key)
        if _goes_in_pieces(key):
            if key in self._pieces:
                self._relayout.start(0)  # its pieces are ready
            else:
                self._renderer.ask(key, m, pos, out)
            return None
        if isinstance(out, str):
            self._kept.move_to_end(key)
            return out
        if time.perf_counter() < until:
            out = message_html(m, pos)
            self._keep(key, out)
            return out
        self._renderer.ask(key, m, pos)
        return None

    def _lay_out(self) -> None:
        """Lay out the shown messages from scratch, the newest rendered first."""
        until = time.perf_counter() + RENDER_HERE_S
        self._earlier.stop()
        for m, pos in reversed(self._rows):  # the newest first: it is what the person sees
            self._html(m, pos, _key(m, pos), until)
        for key in list(self._filling):
            self._stop_filling(key)
        self.clear()
        self._keep_reading_width()
        cursor = QTextCursor(self.document())
        self._link = self._more_above
        if self._link:
            cursor.insertHtml(SHOW_EARLIER_LINK)
        self._starts, self._shown, self._placeholders = [cursor.position()], [], set()
        self._append(cursor, 0, until)

    def _append(self, cursor: QTextCursor, first: int, until: float) -> None:
        """Lay out rows[first:] at the end; `_starts[i]` is where message i begins."""
        for m, pos in self._rows[first:]:
            key = _key(m, pos)
            self._stop_filling(key)
            cursor.movePosition(QTextCursor.MoveOperation.End)
            under_link = self._link and not self._shown
            if self._shown or self._link:
                cursor.insertBlock()  # a message never runs on in its predecessor's paragraph
            out = self._html(m, pos, key, until)
            if out is None:
                self._placeholders.add(key)
                out = placeholder_html(m, pos)
            start = cursor.position()
            cursor.insertHtml(out)
            if under_link:
                self._not_centred(start)
            self._shown.append(key)
            self._starts.append(self._end())

    def _end(self) -> int:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor.position()

    def _keep(self, key: tuple, out: Html) -> None:
        self._kept[key] = out
        while len(self._kept) > KEPT_RENDERS:
            self._kept.popitem(last=False)

    def _stop_filling(self, key: tuple) -> None:
        """A long message partly put in is laid out anew: its pieces wait to go in again."""
        filling = self._filling.pop(key, None)
        if filling is not None:
            self._pieces[key] = filling.pieces

    def _rendered(self, key: tuple, out: Html, pieces: _Pieces | None = None) -> None:
        self._renderer.answered(key)
        self._keep(key, out)
        if pieces is not None and key in self._placeholders:
            self._pieces[key] = pieces
        if not self._relayout.isActive() and key in self._placeholders:
            self._relayout.start(RELAYOUT_MS)  # more renders may follow: put them in together
        if self._above and not self._earlier.isActive():
            self._earlier.start()  # an earlier message may be ready to go in

    # -- edits that keep the person's view ------
    def _hold_view(self, follow_end: bool) -> _HeldView:
        bar = self.verticalScrollBar()
        at_end = follow_end and bar.value() >= bar.maximum() - 80
        cursor = self.cursorForPosition(QPoint(self.viewport().width() // 2, 0))
        pos = cursor.position()
        if self._starts:  # "Show earlier messages" at the top: hold the first message
            pos = max(pos, min(self._starts[0] + (1 if self._link else 0), self._end()))
            cursor.setPosition(pos)
        return _HeldView(pos, self.cursorRect(cursor).top(), at_end)

    def _restore_view(self, view: _HeldView) -> None:
        bar = self.verticalScrollBar()
        if view.follow_end:
            bar.setValue(bar.maximum())
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(min(view.pos, self._end()))
        bar.setValue(bar.value() + self.cursorRect(cursor).top() - view.y)

    def _moved(self, first: int, at: int, removed: int, inserted: int, view: _HeldView) -> None:
        """Text from `at` was replaced: messages first.. and the live answer move with it."""
        delta = inserted - removed
        for i in range(first, len(self._starts)):
            self._starts[i] += delta
        if self._live is not None:
            self._live.start += delta
            self._live.tail_start += delta
        view.moved(at, removed, inserted)

    def _lay_out_again(self) -> None:
        """Put what the worker rendered in place of its placeholders, each where it stands
        (the messages below are not laid out again), and the next piece of each long message
        going in, keeping the view. Per turn: a few messages, about FILL_CHARS of text."""
        index = {k: i for i, k in enumerate(self._shown)}
        self._placeholders &= set(index)
        for gone in [k for k in self._pieces if k not in self._placeholders]:
            del self._pieces[gone]
        for gone in [k for k in self._filling if k not in index]:
            del self._filling[gone]

        def ready(k: tuple) -> bool:
            return k in self._pieces if _goes_in_pieces(k) else k in self._kept

        done = sorted(index[k] for k in self._placeholders if ready(k))
        if not done and not self._filling:
            return
        view = self._hold_view(follow_end=True)
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()  # laid out once for the slice
        put = chars = 0
        for key, filling in list(self._filling.items()):  # the next piece of each, at its end
            if put >= self._slice or (put and chars >= FILL_CHARS):
                break
            i, n = index[key], filling.next
            at = self._starts[i + 1]
            cursor.setPosition(at)
            filling.pieces.put_in(n, cursor)
            self._moved(i + 1, at, 0, cursor.position() - at, view)
            filling.next += 1
            if filling.next == filling.pieces.count:
                del self._filling[key]
            put, chars = put + 1, chars + filling.pieces.size(n)
        for i in done:
            if put >= self._slice or (put and chars >= FILL_CHARS):
                break
            key = self._shown[i]
            self._placeholders.discard(key)
            self._kept.move_to_end(key)
            at = self._starts[i] + (1 if i or self._link else 0)  # after the separator
            end = self._starts[i + 1]
            cursor.setPosition(at)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            pieces = self._pieces.pop(key, None)
            if pieces is None:
                cursor.insertHtml(self._kept[key])
                chars += key[3]
            else:  # its first piece; the rest at the next turns
                pieces.put_in(0, cursor)
                chars += pieces.size(0)
                if pieces.count > 1:
                    self._filling[key] = _Filling(pieces)
            self._moved(i + 1, at, end - at, cursor.position() - at, view)
            put += 1
        cursor.endEditBlock()
        self._restore_view(view)
        if self._filling or any(ready(k) for k in self._placeholders):
            self._relayout.start(0)  # the rest at the next turn

    def _ask_for_earlier(self, rows: list[tuple[Message, tuple[int, int]]]) -> None:
        """Earlier messages to put in above the shown ones: the worker renders them, the
        short ones first (a long one must not hold up the rest), the newest first."""
        self._above = rows
        todo = [(m, pos) for m, pos in reversed(rows) if _key(m, pos) not in self._kept]
        for m, pos in sorted(todo, key=lambda r: len(r[0].content) > RENDER_HERE_CHARS):
            self._renderer.ask(_key(m, pos), m, pos)
        if rows or (self._link and not self._more_above):
            self._earlier.start()

    def _put_in_earlier(self) -> None:
        """Put in the next few earlier messages above the shown ones, the newest first, as
        the worker renders them; the text the person is reading stays where it is."""
        if not self._link:
            self._above = []  # laid out anew meanwhile
            return
        view = self._hold_view(follow_end=False)
        started, put, waiting = time.perf_counter(), 0, False
        # One edit for the slice: the document is laid out again once, not per message (the
        # text below the insertion moves, and that costs about as much as the insertion).
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        while self._above and put < self._slice:
            m, pos = self._above[-1]
            key = _key(m, pos)
            out = self._kept.get(key)
            if _goes_in_pieces(key):  # a placeholder now, its pieces where it stands later
                if key in self._pieces:
                    self._relayout.start(0)
                else:
                    self._renderer.ask(key, m, pos, out)
                self._placeholders.add(key)
                out = placeholder_html(m, pos)
            elif out is not None:
                self._kept.move_to_end(key)
            else:
                self._renderer.ask(key, m, pos)
                waiting = True  # its render comes back as a signal, which goes on from here
                break
            self._above.pop()
            at = self._starts[0]  # the end of the link's paragraph
            cursor.setPosition(at)
            cursor.insertBlock()
            cursor.insertHtml(out)
            self._moved(0, at, 0, cursor.position() - at, view)
            self._not_centred(at + 1)
            self._starts.insert(0, at)
            self._shown.insert(0, key)
            self._rows.insert(0, (m, pos))
            put += 1
        if not self._above and not self._more_above:
            self._drop_link(cursor, view)
            put += 1
        cursor.endEditBlock()
        if put:
            self._restore_view(view)
        # a slice that took too long (a long transcript moves more text): fewer next time
        took = time.perf_counter() - started
        if took > SLICE_S and self._slice > 1:
            self._slice -= 1
        elif took < SLICE_S / 2 and self._slice < EARLIER_SLICE:
            self._slice += 1
        if self._above and not waiting:
            self._earlier.start()

    def _not_centred(self, pos: int) -> None:
        """A message put in under the link's paragraph takes its alignment: take it away."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(pos)
        f = cursor.blockFormat()
        if f.hasProperty(QTextFormat.Property.BlockAlignment):
            f.clearProperty(QTextFormat.Property.BlockAlignment)
            cursor.setBlockFormat(f)

    def _drop_link(self, cursor: QTextCursor, view: _HeldView) -> None:
        """Nothing is earlier: the first message begins the document."""
        first = self.document().findBlock(self._starts[0] + 1)
        block_format, char_format = first.blockFormat(), first.charFormat()
        n = self._starts[0] + 1  # the link's paragraph and the first message's separator
        cursor.setPosition(0)
        cursor.setPosition(n, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        cursor.setBlockFormat(block_format)  # not the link's (centred)
        cursor.setBlockCharFormat(char_format)
        self._link = False
        self._moved(1, 0, n, 0, view)
        self._starts[0] = 0

    def _redo_from(self, first: int) -> None:
        """Lay out messages first.. again (and the answer being written after them)."""
        live = self._live
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._starts[first])
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        for key in self._shown[first:]:
            self._stop_filling(key)
        del self._starts[first + 1 :], self._shown[first:]
        self._placeholders &= set(self._shown)
        self._append(cursor, first, time.perf_counter() + RENDER_HERE_S)
        if live is not None:
            self.start_live(live.message)

    # -- the answer being written ------
    def start_live(self, m: Message) -> None:
        """The answer being written goes at the end from here."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if self._shown or self._link:
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
