"""The chat service on the real engine with the demo model (greedy): turns, branches, stats,
the context meter and the overflow choice, an answer cut off by a dying engine."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace

import pytest

from layerlab.core.chat.service import (
    Busy,
    ChatService,
    ContextFull,
    Ended,
    Piece,
    Started,
)
from layerlab.core.chat.store import Sampling
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import default_plan
from tests.chat.conftest import SETTINGS


def test_send_streams_into_the_store_with_stats_and_events(chat):
    c = chat.new_conversation(settings=SETTINGS)
    events = []
    answer = chat.send(c.id, "What is the capital of France?", events.append)
    assert answer.content and answer.finish in ("stop", "length")
    assert isinstance(events[0], Started) and isinstance(events[-1], Ended)
    pieces = "".join(e.text for e in events if isinstance(e, Piece))
    assert pieces == answer.content == chat.messages(c.id)[-1].content
    s = answer.stats
    assert s.ttft_s > 0 and s.gen_tps > 0 and s.prompt_tps > 0
    assert s.tokens == 24 and s.ended == "length" == answer.finish  # max_tokens=24
    assert s.prompt_tokens > 10
    assert s.ran_on == "CPU: layers 0-29 + output"
    assert [m.role for m in chat.messages(c.id)] == ["user", "assistant"]
    assert chat.conversations()[0].title == "What is the capital of France?"


def test_regenerate_keeps_the_old_answer_and_flipping_shows_either(chat):
    c = chat.new_conversation(settings=SETTINGS)
    first = chat.send(c.id, "Name a colour.")
    creative = replace(SETTINGS, sampling=Sampling("Creative", 1.5, 1.0, 0, 0.0, 1.0, 24, 7))
    chat.set_settings(c.id, creative)
    second = chat.regenerate(first.id)
    assert second.id != first.id and second.parent_id == first.parent_id
    assert chat.branch_position(second.id) == (2, 2)
    assert chat.messages(c.id)[-1].id == second.id
    assert chat.switch_branch(second.id, -1) == first.id
    assert chat.messages(c.id)[-1].content == first.content
    assert chat.switch_branch(first.id, +1) == second.id
    assert chat.messages(c.id)[-1].content == second.content


def test_edit_and_resend_branches_and_both_stay_reachable(chat):
    c = chat.new_conversation(settings=SETTINGS)
    chat.send(c.id, "Say one word.")
    follow = chat.send(c.id, "And another.")
    q2 = chat.messages(c.id)[2]
    edited = chat.edit(q2.id, "And a number.")
    shown = chat.messages(c.id)
    assert [m.content for m in shown[:3]] == [shown[0].content, shown[1].content, "And a number."]
    assert edited.id == shown[-1].id != follow.id
    assert chat.branch_position(shown[2].id) == (2, 2)
    chat.switch_branch(shown[2].id, -1)
    assert [m.id for m in chat.messages(c.id)][-1] == follow.id


def test_stop_keeps_the_text_written_so_far(chat):
    c = chat.new_conversation(
        settings=replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=500))
    )
    pieces = []

    def listen(ev):
        if isinstance(ev, Piece):
            pieces.append(ev.text)
            if len(pieces) == 10:
                chat.stop()

    answer = chat.send(c.id, "Tell me a long story about a dragon.", listen)
    assert answer.finish == "stopped" == answer.stats.ended
    assert 10 <= len(pieces) < 500
    assert answer.content == "".join(pieces)
    short = replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=8))
    chat.set_settings(c.id, short)  # a short second answer: all it has to show is that it comes
    again = chat.send(c.id, "Thanks.")  # the engine answers again after a stop
    assert again.finish in ("stop", "length")


def test_one_answer_at_a_time(chat):
    c = chat.new_conversation(
        settings=replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=300))
    )
    started = threading.Event()
    result = {}

    def listen(ev):
        if isinstance(ev, Piece):
            started.set()

    t = threading.Thread(target=lambda: result.setdefault("a", chat.send(c.id, "Count.", listen)))
    t.start()
    assert started.wait(30)
    assert chat.answering
    with pytest.raises(Busy):
        chat.send(c.id, "Me too")
    chat.stop()
    t.join(30)
    assert result["a"].finish == "stopped"


def test_continue_a_cut_off_answer(chat):
    short = replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=8))
    c = chat.new_conversation(settings=short)
    cut = chat.send(c.id, "Write a sentence about the moon.")
    assert cut.finish == "length"
    more = chat.continue_answer(cut.id)
    assert more.id == cut.id  # the same answer, longer
    assert more.content.startswith(cut.content) and len(more.content) > len(cut.content)
    # the stats count both parts (the engine's own count of the second; with its prefix
    # cache it reports one token more than it streamed, an engine matter)
    assert cut.stats.tokens == 8 and more.stats.tokens >= 16
    assert len(chat.messages(c.id)) == 2


def test_delete_a_message_and_undo(chat):
    c = chat.new_conversation(settings=SETTINGS)
    a = chat.send(c.id, "Hi.")
    chat.delete_message(a.id)
    assert [m.role for m in chat.messages(c.id)] == ["user"]
    chat.undo_delete_message(a.id)
    assert chat.messages(c.id)[-1].id == a.id


def test_the_context_meter_counts_with_the_models_tokenizer(chat, head):
    c = chat.new_conversation(settings=SETTINGS)
    empty = chat.context(c.id)
    assert empty.n_ctx == 2048
    draft = chat.context(c.id, "Hello there, how are you today?")
    assert draft.used > empty.used
    prompt = head.client().tokenize(
        messages=[{"role": "user", "content": "Hello there, how are you today?"}]
    )
    assert draft.used == prompt["tokens"]
    assert "<|im_start|>user\nHello there, how are you today?<|im_end|>" in prompt["prompt"]
    chat.send(c.id, "Hello there, how are you today?")
    after = chat.context(c.id)
    assert after.used > draft.used and "/ 2,048 tokens" in after.text()


def test_a_message_that_would_overflow_offers_the_choice_and_drop_oldest_fits(chat):
    c = chat.new_conversation(settings=SETTINGS)
    parent = None
    for i in range(6):  # a first turn of ~2,100 tokens: more than the 2,048 loaded (and
        # dropping it leaves a short prompt: a long one takes the engine a while on 2 cores)
        parent = chat.store.add_message(
            c.id,
            parent,
            "user" if i % 2 == 0 else "assistant",
            f"turn {i}: " + "word " * (2100 if i == 0 else 20),
        ).id
    with pytest.raises(ContextFull) as e:
        chat.send(c.id, "Summarize.")
    assert e.value.n_ctx == 2048 and e.value.needed > 2048
    assert "new chat" in str(e.value) and "drop the oldest" in str(e.value)
    assert "longer context" in str(e.value)
    assert len(chat.messages(c.id)) == 6  # nothing was added
    chat.drop_oldest_turns(c.id)
    answer = chat.send(c.id, "Summarize.")
    assert answer.finish in ("stop", "length")
    assert answer.stats.prompt_tokens < 2048
    assert len(chat.messages(c.id)) == 8  # the conversation keeps every turn


def test_an_answer_cut_off_by_a_dying_engine_keeps_its_text_and_continues_after_reload(
    demo_model, tmp_path
):
    head = Head(persist=False, state_dir=tmp_path / "head", automatic=False)
    chat = ChatService(head.client, tmp_path / "c.sqlite3", engine_state=lambda: head.state)
    plan = default_plan(str(demo_model), None, 2048, "demo")
    try:
        head.load(plan)
        assert isinstance(head.supervisor.wait_for((Ready, Failed), 90), Ready)
        c = chat.new_conversation(
            settings=replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=500))
        )
        pieces = []

        def listen(ev):
            if isinstance(ev, Piece):
                pieces.append(ev.text)
                if len(pieces) == 15:
                    os.kill(head.supervisor._proc.pid, signal.SIGKILL)

        cut = chat.send(c.id, "Tell me a long story about a dragon.", listen)
        assert cut.finish == "error" and cut.content
        assert "".join(pieces).startswith(cut.content) and len(cut.content) >= 10
        assert cut.note.startswith("The answer was cut off:")
        assert "stopped unexpectedly" in cut.note or "engine stopped" in cut.note
        head.load(plan)
        assert isinstance(head.supervisor.wait_for((Ready,), 90), Ready)
        short = replace(SETTINGS, sampling=replace(SETTINGS.sampling, max_tokens=16))
        chat.set_settings(c.id, short)  # going on is what counts, not how far
        more = chat.continue_answer(cut.id)
        assert more.content.startswith(cut.content) and len(more.content) > len(cut.content)
        assert more.note == "" and more.finish in ("stop", "length")
    finally:
        chat.close()
        head.close()


def test_a_message_is_counted_once_before_it_is_sent(head, store_path):
    """Counting a conversation is a pass of the engine's tokenizer over all of it (~65 ms
    for 15k tokens here): a send counts it once, then sends what it counted."""
    counted: list[int] = []

    def client():
        real = head.client()
        tokenize = real.tokenize

        def counting(**kwargs):
            if "messages" in kwargs:  # not the engine's template probe (once per engine)
                counted.append(len(kwargs["messages"]))
            return tokenize(**kwargs)

        real.tokenize = counting
        return real

    chat = ChatService(client, store_path, engine_state=lambda: head.state)
    try:
        c = chat.new_conversation(settings=SETTINGS)
        first = chat.send(c.id, "Name a colour.")
        assert counted == [1] and first.content
        chat.send(c.id, "Name another.")
        assert counted == [1, 3]  # the whole conversation so far, once
        assert [m.role for m in chat.messages(c.id)] == ["user", "assistant"] * 2
    finally:
        chat.close()
