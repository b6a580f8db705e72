"""Four answers decoded together are each the answer it would be alone; a cancelled one
frees its slot for the next request; the window's requests overtake an API flood."""

from __future__ import annotations

import json
import statistics
import threading
import time

import httpx

from layerlab.core.engine.api import MAX_WAITING
from layerlab.core.engine.client import EngineClient
from tests.batching.conftest import PARALLEL
from tests.batching.helpers import GREEDY, QUESTIONS, Stream, alone, assert_agree, chat, together

MAX_TOKENS = 40


def test_greedy_answers_are_the_same_alone_and_together(engine):
    sup, ready = engine
    one_by_one = [alone(ready.url, sup.token, q, MAX_TOKENS) for q in QUESTIONS]
    streams = together(ready.url, sup.token, QUESTIONS, MAX_TOKENS)
    assert [s.error for s in streams] == [None] * 4
    # they really overlapped: every answer began before any other ended
    assert max(s.first_token for s in streams) < min(s.ended for s in streams)
    assert_agree(one_by_one, [s.text for s in streams])
    for s in streams:
        assert s.finished is not None
        assert s.finished.usage["completion_tokens"] <= MAX_TOKENS


def test_usage_and_stop_strings_hold_per_answer_in_a_batch(engine):
    sup, ready = engine
    client = lambda: EngineClient(ready.url, sup.token)  # noqa: E731
    params = {**GREEDY, "max_tokens": 30, "stop": ["\n"]}
    solo = Stream(client(), chat(QUESTIONS[2]), params).start().join()
    streams = [Stream(client(), chat(q), params).start() for q in QUESTIONS]
    for s in streams:
        s.join()
    mine = streams[2]
    assert "\n" not in mine.text and "\n" not in solo.text
    if mine.text == solo.text:
        assert mine.finished.usage == solo.finished.usage
    else:  # they parted at a near-tie (helpers.NEAR_TIE): the rest is another answer
        assert_agree([alone(ready.url, sup.token, QUESTIONS[2], 30, stop=["\n"])], [mine.text])
    for s in streams:
        u = s.finished.usage
        assert u["completion_tokens"] <= 30 and u["total_tokens"] == (
            u["prompt_tokens"] + u["completion_tokens"]
        )


def test_cancelling_one_of_four_leaves_the_others_unchanged_and_frees_its_slot(engine):
    sup, ready = engine
    long = 120
    expected = [alone(ready.url, sup.token, q, long) for q in QUESTIONS[:3]]
    streams = [
        Stream(EngineClient(ready.url, sup.token), chat(q), {**GREEDY, "max_tokens": long})
        for q in QUESTIONS[:3]
    ]
    victim = Stream(
        EngineClient(ready.url, sup.token), chat(QUESTIONS[3]), {**GREEDY, "max_tokens": 2000}
    )
    for s in [*streams, victim]:
        s.start()
    victim.wait_tokens(3)
    assert sup.client().status()["running"] == PARALLEL
    victim.client.cancel()
    victim.join()
    # a new request takes the freed slot while the other three are still answering
    newcomer = Stream(
        EngineClient(ready.url, sup.token), chat("Say hello."), {**GREEDY, "max_tokens": 4}
    ).start()
    newcomer.join()
    assert newcomer.error is None and newcomer.text
    assert any(s.ended is None or s.ended > newcomer.first_token for s in streams), (
        "the newcomer only got an answer once the others had finished: the slot was not freed"
    )
    for s in streams:
        s.join()
    assert_agree(expected, [s.text for s in streams])
    assert victim.finished is not None and victim.finished.stopped
    status = sup.client().status()
    assert status["running"] == 0 and status["waiting"] == 0


def test_an_api_flood_does_not_keep_the_window_waiting_beyond_one_turn(engine):
    sup, ready = engine
    headers = {"Authorization": f"Bearer {sup.token}"}
    first: dict[int, float] = {}
    ended: dict[int, float] = {}
    codes: dict[int, int] = {}

    def api_request(i: int, max_tokens: int) -> None:
        body = {**GREEDY, "messages": chat(QUESTIONS[i % 4]), "max_tokens": max_tokens}
        with (
            httpx.Client(timeout=300) as http,
            http.stream(
                "POST",
                ready.url + "/v1/chat/completions",
                json={**body, "stream": True},
                headers=headers,
            ) as r,
        ):
            codes[i] = r.status_code
            for line in r.iter_lines():
                if i in first or not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first[i] = time.monotonic()
        ended[i] = time.monotonic()

    def flood(ids: range, max_tokens: int) -> list[threading.Thread]:
        ts = [threading.Thread(target=api_request, args=(i, max_tokens)) for i in ids]
        for t in ts:
            t.start()
        return ts

    client = sup.client()

    def until(what, why: str) -> None:
        deadline = time.monotonic() + 60
        while not what():
            assert time.monotonic() < deadline, f"{why}: {client.status()}"
            time.sleep(0.01)

    # Four longer API answers fill the slots; a flood of short ones piles up behind them,
    # beyond the lane's limit.
    n = 2 * PARALLEL * (1 + MAX_WAITING)
    queued = PARALLEL * MAX_WAITING
    threads = flood(range(PARALLEL), 48)
    until(lambda: len(first) == PARALLEL, "the first answers never began")
    threads += flood(range(PARALLEL, n), 8)
    until(lambda: client.status()["waiting"] == queued, "the API lane never filled")
    until(lambda: len(codes) == n, "not every request was answered or refused")
    waiting = [i for i in range(PARALLEL, n) if codes[i] == 200 and i not in first]
    assert len(waiting) == queued and list(codes.values()).count(429) == n - PARALLEL - queued
    window = Stream(
        EngineClient(ready.url, sup.token), chat("Hi!"), {**GREEDY, "max_tokens": 4}
    ).start()
    window.join(300)
    for t in threads:
        t.join(300)
    assert window.error is None and window.first_token is not None
    # The window took the first slot that came free: its answer began no later than the
    # first of the API requests that were waiting before it (in the same step, at worst);
    # a window that queued behind them would have begun a whole short answer later.
    turn = statistics.median(ended[i] - first[i] for i in waiting)
    assert window.first_token <= min(first[i] for i in waiting) + turn / 4, (
        window.first_token,
        sorted(first[i] for i in waiting),
        turn,
    )


def test_n_answers_of_one_request_are_decoded_together(engine):
    # OpenAI's n: three answers to one prompt take three slots at once, their chunks
    # interleaved by index; greedy, the three rows of one batch are the same text.
    sup, ready = engine
    body = {
        **GREEDY,
        "messages": chat(QUESTIONS[3]),
        "max_tokens": 24,
        "n": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    order: list[int] = []
    texts = {0: "", 1: "", 2: ""}
    usage = None
    running_seen = 0
    with (
        httpx.Client(timeout=120) as http,
        http.stream(
            "POST",
            ready.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {sup.token}"},
        ) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk["choices"]:
                if c["delta"].get("content"):
                    order.append(c["index"])
                    texts[c["index"]] += c["delta"]["content"]
                    if len(order) == 6:
                        running_seen = sup.client().status()["running"]
    assert texts[0] and texts[0] == texts[1] == texts[2]
    first_end = min(max(i for i, k in enumerate(order) if k == j) for j in range(3))
    assert set(order[:first_end]) == {0, 1, 2}, order  # all three ran before any ended
    assert running_seen == 3
    assert usage["completion_tokens"] == 3 * 24 and usage["prompt_tokens"] > 0
