"""The chat pane and the conversation sidebar, offscreen, on the real engine (greedy)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt, QUrl

from layerlab.core.chat.store import Sampling
from layerlab.core.planner.devices import host_device
from layerlab.core.units import MiB
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.chat.sidebar import ConversationSidebar
from tests.chat.conftest import SETTINGS

pytestmark = pytest.mark.gui


@pytest.fixture
def pane(qtbot, head):
    p = ChatPane(head)
    qtbot.addWidget(p)
    p.resize(900, 700)
    p.show()
    assert head.client() is not None, head.state
    p.set_client(head.client())
    p.open_conversation(head.chat.new_conversation(settings=SETTINGS).id)
    yield p
    p.shutdown()


def ask(qtbot, pane, text: str, timeout: int = 60_000) -> None:
    pane.input.setPlainText(text)
    qtbot.keyClick(pane.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not pane.busy, timeout=timeout)


def act(pane, what: str, mid: str) -> None:
    pane.transcript.anchorClicked.emit(QUrl(f"act:{what}:{mid}"))


def test_send_keeps_it_in_the_store_with_stats_under_the_answer(qtbot, pane, head):
    ask(qtbot, pane, "What is the capital of France?")
    shown = pane.conversation.messages
    assert [m.role for m in shown] == ["user", "assistant"]
    stored = head.chat.messages(pane.conversation_id)
    assert [m.content for m in stored] == [m.content for m in shown]
    text = pane.transcript.toPlainText()
    assert "tok/s" in text and " tokens · " in text and "on CPU: layers 0-29 + output" in text
    assert "Regenerate" in text and "Edit" in text and "Copy" in text
    qtbot.waitUntil(lambda: pane.meter_value is not None, timeout=10_000)
    assert pane.meter_value.n_ctx == 2048 and "/ 2,048 tokens" in pane.meter.format()


def test_turns_run_on_the_thread_the_pane_started_with_it(qtbot, pane):
    """Send hands the turn to a thread the pane already has: starting a thread waits until it
    first gets Python's GIL (30-140 ms while the worker formats the last answer)."""
    there_before = set(threading.enumerate())
    ran_on = []

    def follow(turn) -> None:  # in the turn's own thread
        turn.started.connect(
            lambda _m: ran_on.append(threading.current_thread()), Qt.ConnectionType.DirectConnection
        )

    pane.answerStarted.connect(follow)
    ask(qtbot, pane, "Say hello.")
    ask(qtbot, pane, "Say it again.")
    assert len(ran_on) == 2 and ran_on[0] is ran_on[1], ran_on
    assert ran_on[0] in there_before and ran_on[0].name.startswith("chat-turn")
    assert ran_on[0] is not threading.main_thread()


def test_stop_regenerate_flip_and_continue(qtbot, pane, head):
    pane.params = {"max_tokens": 400}
    pane.input.setPlainText("Tell me a long story about a dragon.")
    pane.send()
    qtbot.waitUntil(lambda: len(pane.conversation.messages[-1].content) > 40, timeout=30_000)
    qtbot.mouseClick(pane.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not pane.busy, timeout=10_000)
    cut = pane.conversation.messages[-1]
    assert cut.finish == "stopped" and "[stopped]" in pane.transcript.toPlainText()
    assert "Continue" in pane.transcript.toPlainText()

    act(pane, "continue", cut.id)
    qtbot.waitUntil(lambda: pane.busy or pane.conversation.messages[-1].finish != "stopped")
    qtbot.waitUntil(lambda: len(pane.conversation.messages[-1].content) > len(cut.content) + 20)
    pane.stop()
    qtbot.waitUntil(lambda: not pane.busy, timeout=10_000)
    assert pane.conversation.messages[-1].content.startswith(cut.content)

    pane.params = {"max_tokens": 12}
    pane._apply_params(pane.conversation_id)
    act(pane, "regenerate", cut.id)
    qtbot.waitUntil(
        lambda: not pane.busy and pane.conversation.messages[-1].id != cut.id, timeout=30_000
    )
    assert "< 2/2 >" in pane.transcript.toPlainText()
    act(pane, "prev", pane.conversation.messages[-1].id)
    assert pane.conversation.messages[-1].id == cut.id
    assert "< 1/2 >" in pane.transcript.toPlainText()


def test_edit_makes_a_branch_and_delete_has_undo(qtbot, pane):
    ask(qtbot, pane, "Say one word.")
    first_q = pane.conversation.messages[0]
    act(pane, "edit", first_q.id)
    assert pane.input.toPlainText() == "Say one word." and pane.editing_label.isVisible()
    pane.input.setPlainText("Say two words.")
    pane.send()
    qtbot.waitUntil(lambda: not pane.busy, timeout=30_000)
    assert pane.conversation.messages[0].content == "Say two words."
    assert "< 2/2 >" in pane.transcript.toPlainText()
    act(pane, "prev", pane.conversation.messages[0].id)
    assert pane.conversation.messages[0].content == "Say one word."

    answer = pane.conversation.messages[-1]
    act(pane, "delete", answer.id)
    assert [m.role for m in pane.conversation.messages] == ["user"]
    assert "Undo" in pane.problem.text()
    pane.problem.linkActivated.emit("undo")
    assert pane.conversation.messages[-1].id == answer.id


def test_the_overflow_choice_then_drop_oldest(qtbot, pane, head):
    store = head.chat.store
    cid = pane.conversation_id
    parent = None
    for i in range(6):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(
            cid, parent, role, f"turn {i}: " + "word " * (2100 if i == 0 else 20)
        ).id
    pane.open_conversation(cid)
    ask(qtbot, pane, "Summarize.")
    assert pane.choice.isVisible() and "2,048" in pane.choice.text.text()
    assert pane.overflow_new.text() == "Start a new chat"
    # the longer context is offered once the planner said it fits this machine
    qtbot.waitUntil(lambda: pane.longer is not None, timeout=30_000)
    assert pane.longer.fits and not pane.overflow_reload.isHidden()
    assert pane.overflow_reload.text() == "Reload with 4,096 tokens of context"
    assert (
        pane.longer.plan.n_ctx == 4096 and pane.longer.plan.model_path == head.state.plan.model_path
    )
    assert pane.input.toPlainText() == "Summarize."  # nothing typed is lost
    qtbot.mouseClick(pane.overflow_drop, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not pane.busy, timeout=60_000)
    assert not pane.choice.isVisible()
    assert len(pane.conversation.messages) == 8
    assert head.chat.settings(cid).drop_oldest


def long_conversation(store, cid: str) -> None:
    """Turns that take more than the demo engine's 2,048 tokens of context."""
    parent = None
    for i in range(6):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(
            cid, parent, role, f"turn {i}: " + "word " * (2100 if i == 0 else 20)
        ).id


def test_a_longer_context_that_does_not_fit_the_cluster_is_not_offered(qtbot, pane, head):
    cid = pane.conversation_id
    long_conversation(head.chat.store, cid)
    pane.open_conversation(cid)
    pane.plan_devices = lambda: [host_device(1 * MiB, 64 * MiB)]  # a cluster with no room
    ask(qtbot, pane, "Summarize.")
    assert pane.choice.isVisible()
    qtbot.waitUntil(lambda: pane.longer is not None, timeout=30_000)
    assert not pane.longer.fits and pane.overflow_reload.isHidden()
    words = pane.choice.detail.text()
    assert "4,096 tokens" in words and "does not fit this cluster" in words
    assert not pane.overflow_new.isHidden() and not pane.overflow_drop.isHidden()
    before = pane.meter_value
    pane.refresh_meter()  # a reading without the draft (as after a turn) leaves the choice up
    qtbot.waitUntil(lambda: pane.meter_value is not before, timeout=10_000)
    assert pane.choice.isVisible()


def test_the_meter_counts_the_draft_and_the_choice_comes_before_send(qtbot, pane, head):
    qtbot.waitUntil(lambda: pane.meter_value is not None, timeout=10_000)
    empty = pane.meter_value.used
    pane.input.setPlainText("Hello there, how are you today?")
    qtbot.waitUntil(lambda: pane.meter_value.used > empty, timeout=10_000)
    short = pane.meter_value.used
    pane.input.setPlainText("Hello there, how are you today? " + "Tell me more. " * 40)
    qtbot.waitUntil(lambda: pane.meter_value.used > short + 40, timeout=10_000)
    assert not pane.choice.isVisible()

    cid = pane.conversation_id
    long_conversation(head.chat.store, cid)
    pane.open_conversation(cid)
    pane.input.setPlainText("Summarize.")  # typed, not sent
    qtbot.waitUntil(lambda: pane.choice.isVisible(), timeout=10_000)
    assert "2,048" in pane.choice.text.text() and not pane.overflow_drop.isHidden()
    assert not pane.busy and len(head.chat.messages(cid)) == 6  # nothing was sent
    assert pane.meter_value.used > 2048 - 256
    pane.input.clear()  # nothing to send: nothing to choose
    qtbot.waitUntil(lambda: not pane.choice.isVisible(), timeout=10_000)


def test_model_text_is_shown_as_text_and_links_open_only_when_clicked(qtbot, pane, head):
    cid = pane.conversation_id
    store = head.chat.store
    q = store.add_message(cid, None, "user", "<b>not bold</b>")
    store.add_message(
        cid,
        q.id,
        "assistant",
        "<script>alert(1)</script> see [docs](https://example.org)\n\n```python\nx = 1\n```\n",
    )
    opened = []
    pane.transcript.open_link = opened.append
    pane.open_conversation(cid)
    text = pane.transcript.toPlainText()
    assert "<b>not bold</b>" in text and "<script>alert(1)</script>" in text
    assert opened == []
    pane.transcript.anchorClicked.emit(QUrl("https://example.org"))
    assert [u.toString() for u in opened] == ["https://example.org"]
    answer = pane.conversation.messages[-1]
    pane.transcript.anchorClicked.emit(QUrl(f"copy:{answer.id}:0"))
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == "x = 1\n"


def test_sampling_presets_and_system_prompt_are_kept_per_conversation(qtbot, pane, head):
    cid = pane.conversation_id
    pane.sampling.preset.setCurrentText("Creative")
    assert head.chat.settings(cid).sampling == replace(
        Sampling("Creative", 1.0, 0.98, 100, 0.02, 1.0, 1024), seed=None
    )
    pane.sampling.temperature.setValue(0.3)
    assert head.chat.settings(cid).sampling.temperature == pytest.approx(0.3)
    assert pane.sampling.preset.currentText() == "Custom"
    pane.sampling.system_prompt.setText("Answer in French.")
    pane.sampling.system_prompt.editingFinished.emit()
    assert head.chat.settings(cid).system_prompt == "Answer in French."


def test_a_preset_chosen_before_the_first_message_is_the_one_kept(qtbot, head):
    fresh = ChatPane(head)
    qtbot.addWidget(fresh)
    fresh.show()
    fresh.set_client(head.client())
    try:
        # before any conversation: the default it will be saved with, details included
        assert fresh.conversation_id is None
        assert fresh.sampling.preset.currentText() == "Balanced"
        assert fresh.sampling.temperature.value() == pytest.approx(0.7)
        fresh.sampling.preset.setCurrentText("Creative")
        fresh.params = {"max_tokens": 4}
        ask(qtbot, fresh, "Say hello.")
        kept = head.chat.settings(fresh.conversation_id).sampling
        assert (kept.preset, kept.temperature, kept.top_k) == ("Creative", 1.0, 100)
    finally:
        fresh.shutdown()


def test_the_sidebar_new_rename_search_delete_undo(qtbot, head, pane):
    side = ConversationSidebar(head)
    qtbot.addWidget(side)
    side.show()
    pane.attach_sidebar(side)
    qtbot.mouseClick(side.new_button, Qt.MouseButton.LeftButton)
    cid = pane.conversation_id
    ask(qtbot, pane, "Tell me about zebras.")
    assert side.list.item(0).text() == "Tell me about zebras." and side.current_id() == cid
    side.rename(cid, "Zebras")
    assert side.list.item(0).text() == "Zebras"
    side.search.setText("zebras")
    qtbot.waitUntil(lambda: side.list.count() == 1, timeout=3000)
    side.search.setText("")
    qtbot.waitUntil(lambda: side.list.count() > 1, timeout=3000)
    side.select(cid)
    qtbot.mouseClick(side.delete_button, Qt.MouseButton.LeftButton)
    assert cid not in [
        side.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(side.list.count())
    ]
    assert side.undo_bar.isVisible()
    qtbot.mouseClick(side.undo_button, Qt.MouseButton.LeftButton)
    assert side.current_id() == cid and pane.conversation_id == cid
