"""The transcript keeps the GUI thread free: long conversations open by their newest
messages, a long message is formatted by a worker while a placeholder shows; a choice under
the conversation is shown whole (no engine)."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QTimer

from layerlab.core.chat.longer_context import LongerContext
from layerlab.core.chat.service import ContextFull
from layerlab.core.chat.store import Store
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.chat.transcript import EARLIER_SLICE, SHOWN_AT_FIRST, TranscriptView

pytestmark = pytest.mark.gui


@pytest.fixture
def pane(qtbot):
    p = ChatPane()
    qtbot.addWidget(p)
    p.resize(900, 700)
    p.show()
    yield p
    p.shutdown()


def test_a_5000_line_code_block_is_formatted_off_the_gui_thread(qtbot, pane):
    store: Store = pane.service.store
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "Print 5,000 lines.")
    code = "\n".join(f"print({i})  # line {i}" for i in range(5000))
    store.add_message(c.id, q.id, "assistant", f"Here:\n\n```python\n{code}\n```\n", finish="stop")
    pane.open_conversation(c.id)
    # open_conversation returned before the block was formatted: the placeholder shows
    assert "Formatting a long message (5,005 lines)" in pane.transcript.toPlainText()
    assert pane.transcript.pending_renders == 1
    assert any(t.name.startswith("chat-render") for t in threading.enumerate())
    qtbot.waitUntil(lambda: pane.transcript.pending_renders == 0, timeout=60_000)
    qtbot.waitUntil(lambda: "line 4999" in pane.transcript.toPlainText(), timeout=5_000)
    text = pane.transcript.toPlainText()
    assert "Formatting a long message" not in text and "Regenerate" in text
    assert "Copy" in text.split("line 4999")[0]  # the block's own copy link, above it


def test_a_long_conversation_shows_its_newest_messages_and_more_on_request(qtbot, pane):
    store: Store = pane.service.store
    c = store.create_conversation()
    parent = None
    for i in range(200):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(c.id, parent, role, f"message number {i}", finish="stop").id
    pane.open_conversation(c.id)
    text = pane.transcript.toPlainText()
    assert "message number 199" in text and "Show earlier messages" in text
    assert f"message number {199 - SHOWN_AT_FIRST}" not in text
    assert len(pane.conversation.messages) == SHOWN_AT_FIRST
    view = pane.transcript
    view.earlierRequested.emit()
    qtbot.waitUntil(lambda: f"message number {199 - SHOWN_AT_FIRST}" in view.toPlainText())
    for _ in range(5):
        view.earlierRequested.emit()
        qtbot.waitUntil(lambda: view.earlier_waiting == 0, timeout=10_000)
    text = view.toPlainText()
    assert "message number 0\n" in text and "Show earlier messages" not in text
    assert len(pane.conversation.messages) == 200


def test_a_choice_is_never_cut_off_and_leaves_no_words_behind(qtbot, pane):
    pane.resize(1000, 700)
    pane._offer_overflow(ContextFull(2391, 2048))
    words = "A longer context (4,096 tokens) does not fit this cluster. " * 4
    pane._show_longer(LongerContext(4096, None, words))
    detail, text = pane.choice.detail, pane.choice.text

    def whole(label) -> bool:
        return label.height() >= label.heightForWidth(label.width())

    qtbot.waitUntil(lambda: whole(detail) and whole(text), timeout=5_000)
    assert pane.overflow_reload.isHidden()
    pane._offer_templates("base.gguf")  # the next choice: only its own words
    assert detail.isHidden() and detail.text() == ""
    assert text.text().startswith("base.gguf has no chat template (it is a base model).")


def test_show_earlier_puts_messages_in_a_few_per_turn_and_the_view_stays(qtbot, pane):
    """ "Show earlier messages" on a 300-message conversation: the earlier messages go in a
    slice of a few per turn of the event loop (never 50 at once on the GUI thread), the
    message the person was reading stays where it was on screen, and the result is the same
    document a fresh layout of all 300 makes."""
    store: Store = pane.service.store
    c = store.create_conversation()
    parent = None
    for i in range(300):  # every turn alike: the same number of blocks each
        role = "user" if i % 2 == 0 else "assistant"
        body = (
            f"message number {i:03d}\n\nSome **bold**, `code` and a list:\n\n- one\n- two\n\n"
            f"```python\ndef f(x):\n    return x * {i}\n```\n"
        )
        parent = store.add_message(c.id, parent, role, body, finish="stop").id
    pane.open_conversation(c.id)
    view = pane.transcript
    doc = view.document()
    qtbot.waitUntil(lambda: view.pending_renders == 0, timeout=30_000)
    qtbot.waitUntil(lambda: "Some bold" in view.toPlainText().split("number 270")[1])
    view.verticalScrollBar().setValue(0)  # scrolled up to the link, reading the first one

    def y_of(text: str) -> int:
        return view.cursorRect(doc.find(text)).top()

    reading = y_of("message number 270")
    # A heartbeat at every turn of the event loop: how much the document grew since the
    # last turn (in blocks) and how long the turn took.
    grew, gaps, last = [], [], [doc.blockCount(), time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        grew.append(doc.blockCount() - last[0])
        gaps.append(now - last[1])
        last[:] = [doc.blockCount(), now]

    heart = QTimer()
    heart.setInterval(0)
    heart.timeout.connect(beat)
    heart.start()
    try:
        for _ in range(6):  # 30 shown, 50 more each time: all 300
            last[1] = time.perf_counter()
            view.earlierRequested.emit()  # as a click on the link
            qtbot.waitUntil(lambda: view.earlier_waiting == 0, timeout=30_000)
            qtbot.waitUntil(lambda: view.pending_renders == 0, timeout=30_000)
    finally:
        heart.stop()
    text = view.toPlainText()
    assert "message number 000" in text and "Show earlier messages" not in text
    per_turn = doc.blockCount() / 150  # a question and its answer (an answer has more)
    slice_at_most = (EARLIER_SLICE + 1) // 2 * per_turn + 2
    assert max(grew) <= slice_at_most, (max(grew), per_turn)
    assert len([g for g in grew if g > 0]) >= 270 / EARLIER_SLICE  # in slices, not at once
    assert abs(y_of("message number 270") - reading) <= 2  # the view did not jump
    # generous (the machine is shared): laying out 50 at once took ~70 ms here
    assert max(gaps) < 0.25, max(gaps)

    fresh = TranscriptView()
    qtbot.addWidget(fresh)
    fresh.resize(view.size())
    fresh.show()
    rows, complete = pane.service.newest_messages(c.id, 300)
    fresh.show_messages(rows, not complete)
    try:
        qtbot.waitUntil(lambda: fresh.toPlainText() == text, timeout=30_000)
        assert fresh.document().toHtml() == doc.toHtml()
    finally:
        fresh.shutdown()


def _long_answer() -> str:
    """About 50k characters as a model writes them: paragraphs, code, lists, a table, a quote."""
    words = ["The ", "quick ", "brown ", "fox ", "jumps ", "over ", "`the` ", "lazy ", "dog. "]
    out = []
    for i in range(9400):
        word = words[i % len(words)]
        if i % 60 == 59:
            word += "\n\n"
        if i % 600 == 300:
            word = "\n\n```python\nfor i in range(3):\n    print(i)\n```\n\n"
        if i % 2000 == 1000:
            word = (
                "\n\n1. one\n2. two\n   - nested\n3. three\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            )
            word += "> quoted\n> more\n\n"
        out.append(word)
    return "".join(out)


def test_a_long_answer_that_ends_goes_in_a_piece_per_turn_as_if_at_once(qtbot, monkeypatch):
    """An answer of 50k characters ends: its formatted HTML goes in a piece of about
    FILL_CHARS per turn of the event loop (at once it took ~45 ms of the GUI thread), what the
    person reads further up stays where it is, and the document is the one a layout of the
    whole message at once makes. The worker never parses the whole answer's HTML in one call
    (Qt's parser holds Python's GIL throughout: 50k characters froze every thread ~25 ms),
    only a part of about FILL_CHARS at a time."""
    from dataclasses import replace

    from layerlab.core.chat.store import Message
    from layerlab.ui.chat import transcript

    parsed: list[tuple[int, int, str]] = []  # each parse call: HTML size, text size, thread

    def counting_parse(out: str):
        doc = transcript.parse_html(out)
        parsed.append((len(out), doc.characterCount(), threading.current_thread().name))
        return doc

    view = TranscriptView(parse=counting_parse)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    words = "Words. " * 80
    before = [  # more than a screenful: the person can scroll up, away from the end
        (Message(f"m{i}", "c", None, "user", f"message number {i}\n\n{words}", 0, "stop"), (1, 1))
        for i in range(12)
    ]
    q = Message("q1", "c", None, "user", "Tell me a long story.", 0.0, "stop")
    live = Message("a1", "c", "q1", "assistant", "", 0.0)
    text = _long_answer()
    assert len(text) > 50_000
    view.show_messages([*before, (q, (1, 1))])
    view.start_live(live)
    for n in range(2_500, len(text) + 2_500, 2_500):  # as it streams
        view.update_live(replace(live, content=text[:n]))
    doc = view.document()

    def y_of(what: str) -> int:
        return view.cursorRect(doc.find(what)).top()

    grew, ys, last = [], [], [0]

    def beat() -> None:
        grew.append(doc.characterCount() - last[0])
        ys.append(y_of("message number 3"))
        last[0] = doc.characterCount()

    heart = QTimer()
    heart.setInterval(0)
    heart.timeout.connect(beat)
    ended = replace(live, content=text, finish="length")
    view.show_messages([*before, (q, (1, 1)), (ended, (1, 1))])  # as the pane does at the end
    assert "Formatting a long message" in view.toPlainText()
    view.verticalScrollBar().setValue(200)  # scrolled up, reading an earlier message
    reading, last[0] = y_of("message number 3"), doc.characterCount()
    heart.start()
    try:
        qtbot.waitUntil(lambda: view.pending_renders == 0, timeout=60_000)
    finally:
        heart.stop()
    assert "Formatting a long message" not in view.toPlainText()
    assert "Regenerate" in view.toPlainText()
    biggest_block = max(len(p) for p in text.split("\n\n"))  # a piece ends at a paragraph
    assert max(grew) <= transcript.FILL_CHARS + 2 * biggest_block, max(grew)
    turns = len([g for g in grew if g > 0])
    assert turns >= len(text) // (transcript.FILL_CHARS + 2 * biggest_block), turns
    assert all(abs(y - reading) <= 2 for y in ys), (reading, sorted(set(ys)))  # it stays
    whole_html = len(transcript.message_html(ended))
    assert len(parsed) >= len(text) // (transcript.FILL_CHARS + 2 * biggest_block), parsed
    assert max(n for _, n, _ in parsed) <= transcript.FILL_CHARS + 2 * biggest_block, parsed
    assert max(n for n, _, _ in parsed) < whole_html / 8, (whole_html, parsed)  # ~2 ms each
    assert sum(n for n, _, _ in parsed) <= whole_html  # each part once
    assert {name.split("_")[0] for _, _, name in parsed} == {"chat-render"}  # not the GUI's

    # the same conversation laid out at once (rendered and put in on the GUI thread)
    monkeypatch.setattr(transcript, "RENDER_HERE_CHARS", 10**9)
    monkeypatch.setattr(transcript, "RENDER_HERE_S", 60.0)
    fresh = TranscriptView()
    qtbot.addWidget(fresh)
    fresh.resize(view.size())
    fresh.show()
    try:
        fresh.show_messages([*before, (q, (1, 1)), (ended, (1, 1))])
        assert fresh.pending_renders == 0
        assert fresh.document().toHtml() == doc.toHtml()
    finally:
        fresh.shutdown()
        view.shutdown()


BLOCKS = {  # every kind of top-level block a model writes
    "paragraph": "Some *words*, `code` and [a link](https://example.org).",
    "heading": "## A heading",
    "bullets": "- one\n- two\n  - nested",
    "numbers": "1. one\n2. two",
    "code": "```python\nx = 1\n```",
    "indented code": "    plain code",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
    "quote": "> quoted\n> more",
    "rule": "---",
}


def test_a_long_message_cut_anywhere_it_may_be_joins_as_the_whole(qtbot):
    """A long message goes in as parts, each parsed into a document of its own: every kind of
    block followed by every kind, cut at every place a part may begin (parts of a character),
    put in piece by piece where the message stands (between others) makes the same document
    as its whole HTML put in at once."""
    from PySide6.QtGui import QTextCursor, QTextDocument

    from layerlab.core.chat.store import Message
    from layerlab.ui.chat import transcript

    kinds = list(BLOCKS.values())
    # each kind after each (two lists of one kind in a row are one list: a rule between)
    text = "\n\n".join(f"{a}\n\nSome words.\n\n---\n\n{a}\n\n{b}" for a in kinds for b in kinds)
    m = Message("a1", "c", "q1", "assistant", text, 0.0, "stop")
    parts = transcript.message_parts(m, part_chars=1)
    assert "".join(parts) == transcript.message_html(m)
    assert len(parts) > 100  # cut wherever a paragraph, a heading or a quote begins

    def laid_out() -> tuple[QTextDocument, QTextCursor]:
        doc = QTextDocument()
        cursor = QTextCursor(doc)
        cursor.insertHtml("<p>before</p>")
        cursor.insertBlock()  # as the view puts a message in after another
        at = cursor.position()
        cursor.insertBlock()
        cursor.insertHtml("<p>after</p>")
        cursor.setPosition(at)
        return doc, cursor

    whole, cursor = laid_out()
    cursor.insertHtml(transcript.message_html(m))
    joined, cursor = laid_out()
    pieces = transcript._Pieces(parts)
    for n in range(pieces.count):
        pieces.put_in(n, cursor)  # the cursor ends where the message ends: the next goes there
    assert joined.toPlainText() == whole.toPlainText()
    assert joined.toHtml() == whole.toHtml()
