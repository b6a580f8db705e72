"""Running answers are kept in consecutive slots (one llama.cpp micro-batch a step), a
follow-up turn lands in the slot that holds its conversation, and a system prompt shared by
new conversations is read once."""

from __future__ import annotations

import httpx

from layerlab.core.engine.client import EngineClient
from tests.batching.helpers import (
    GREEDY,
    HOUSE_RULES,
    QUESTIONS,
    Stream,
    alone,
    assert_agree,
    chat,
    forget_in_every_slot,
    together,
)

LONG = 90


def test_a_gap_left_by_a_short_answer_is_closed_and_the_moved_answer_is_unchanged(engine):
    sup, ready = engine
    expected = [alone(ready.url, sup.token, q, LONG) for q in (QUESTIONS[3], QUESTIONS[0])]
    before = sup.client().status()["moves"]

    def stream(text: str, max_tokens: int) -> Stream:
        client = EngineClient(ready.url, sup.token)
        return Stream(client, chat(text), {**GREEDY, "max_tokens": max_tokens}).start()

    # one after another, so they take three neighbouring slots with the short one between
    first = stream(QUESTIONS[3], LONG)
    first.wait_tokens(1)
    short = stream(QUESTIONS[2], 6)
    short.wait_tokens(1)
    last = stream(QUESTIONS[0], LONG)
    short.join()
    assert short.error is None and short.tokens <= 6
    for s in (first, last):
        s.join()
        assert s.error is None
    # the short answer's end left the other two apart: one of them was moved beside the
    # other (its KV stream copied) and went on writing exactly what it would have alone
    assert sup.client().status()["moves"] > before
    assert_agree(expected, [first.text, last.text])


def test_a_follow_up_turn_decodes_only_what_is_new(engine):
    sup, ready = engine
    headers = {"Authorization": f"Bearer {sup.token}"}
    messages = chat("Name a colour of the sky.")
    with httpx.Client(timeout=120) as http:

        def ask(msgs: list[dict]) -> dict:
            body = {**GREEDY, "messages": msgs, "max_tokens": 12}
            r = http.post(ready.url + "/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 200, r.text
            return r.json()

        first = ask(messages)
        # another conversation meanwhile, so the follow-up must find its own slot again
        ask(chat(QUESTIONS[1]))
        reply = first["choices"][0]["message"]["content"]
        second = ask([*messages, {"role": "assistant", "content": reply}, *chat("And at night?")])
    prompt = second["usage"]["prompt_tokens"]
    decoded = second["timings"]["prompt_n"]
    assert prompt > first["usage"]["prompt_tokens"] + 5
    # the first turn's prompt (and most of its answer) came from the slot's cache
    assert decoded < prompt - first["usage"]["prompt_tokens"] + 8, (decoded, prompt)


def test_new_conversations_sharing_a_system_prompt_read_it_once(engine):
    sup, ready = engine
    expected = [alone(ready.url, sup.token, q, 24, system=HOUSE_RULES) for q in QUESTIONS]
    forget_in_every_slot(ready.url, sup.token)
    before = sup.client().status()["borrowed"]
    streams = together(ready.url, sup.token, QUESTIONS, 24, system=HOUSE_RULES)
    assert [s.error for s in streams] == [None] * 4
    # the first to be read read the system prompt; the other three copied its slot's cache
    # and read only their own question (each with its last two tokens, see _start)
    read = sorted(s.finished.timings["prompt_n"] for s in streams)  # type: ignore[union-attr]
    prompt = [s.finished.usage["prompt_tokens"] for s in streams]  # type: ignore[union-attr]
    shared = sup.client().status()["borrowed"] - before
    assert shared >= 3 * 30, (shared, read, prompt)
    assert read[-1] >= 40 and read[2] < 25, (read, prompt)
    # and each wrote what it writes alone
    assert_agree(expected, [s.text for s in streams])
