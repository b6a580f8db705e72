"""The transcript keeps the GUI thread free: long conversations open by their newest
messages, a long message is formatted by a worker while a placeholder shows; a choice under
the conversation is shown whole (no engine)."""

from __future__ import annotations

import threading

import pytest

from layerlab.core.chat.longer_context import LongerContext
from layerlab.core.chat.service import ContextFull, NoChatTemplate
from layerlab.core.chat.store import Store
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.chat.transcript import SHOWN_AT_FIRST

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
    pane.transcript.earlierRequested.emit()
    assert f"message number {199 - SHOWN_AT_FIRST}" in pane.transcript.toPlainText()
    for _ in range(5):
        pane.transcript.earlierRequested.emit()
    text = pane.transcript.toPlainText()
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
    pane._offer_templates(str(NoChatTemplate()))  # the next choice: only its own words
    assert detail.isHidden() and detail.text() == ""
