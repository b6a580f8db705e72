"""Four answers decoded together over two loopback workers: the same text as alone; a
worker lost mid-batch fails all four with the same words, and the head is told once."""

from __future__ import annotations

import time

from layerlab.core.engine.client import EngineClient, EngineUnavailable
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.head import Head
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.batching.conftest import N_CTX, PARALLEL
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


def _split_plan(demo_model, w1, w2) -> LoadPlan:
    return LoadPlan(
        str(demo_model),
        n_ctx=N_CTX,
        n_threads=2,
        parallel=PARALLEL,
        devices=[DeviceRef.rpc(w1.endpoint), DeviceRef.rpc(w2.endpoint)],
        tensor_split=[1, 2],
        flash_attn=True,
    )


def four_long_answers(url: str, token: str) -> list[Stream]:
    """Four answers far from their end, each past its third piece."""
    streams = [
        Stream(EngineClient(url, token), chat(q), {**GREEDY, "max_tokens": 2000}) for q in QUESTIONS
    ]
    for s in streams:
        s.start()
    for s in streams:
        s.wait_tokens(3)
    return streams


def test_split_over_two_workers_greedy_answers_are_the_same_alone_and_together(
    demo_model, start_worker
):
    w1, w2 = start_worker(), start_worker()
    sup = EngineSupervisor()
    sup.start(_split_plan(demo_model, w1, w2))
    ready = sup.wait_for((Ready, Failed), 90)
    assert isinstance(ready, Ready), ready
    try:
        one_by_one = [alone(ready.url, sup.token, q, 24, system=HOUSE_RULES) for q in QUESTIONS]
        forget_in_every_slot(ready.url, sup.token)
        streams = together(ready.url, sup.token, QUESTIONS, 24, system=HOUSE_RULES)
        assert [s.error for s in streams] == [None] * 4
        assert max(s.first_token for s in streams) < min(s.ended for s in streams)
        # three of the four took the shared system prompt from another slot's cache: a
        # KV stream copied on the workers, and still the text each writes alone
        assert sup.client().status()["borrowed"] >= 3 * 30
        assert_agree(one_by_one, [s.text for s in streams])
    finally:
        sup.stop()


def test_a_worker_lost_mid_batch_fails_all_four_answers_and_the_head_hears_it_once(
    demo_model, start_worker
):
    w1, w2 = start_worker(), start_worker()
    states: list = []
    sup = EngineSupervisor(on_state=states.append)
    sup.start(_split_plan(demo_model, w1, w2))
    ready = sup.wait_for((Ready, Failed), 90)
    assert isinstance(ready, Ready), ready
    try:
        streams = four_long_answers(ready.url, sup.token)
        assert sup.client().status()["running"] == PARALLEL
        w2.kill()
        killed = time.monotonic()
        for s in streams:
            s.join(30)
        for s in streams:
            assert isinstance(s.error, EngineUnavailable), s.error
            assert s.ended - killed < 2.0, (
                f"an answer heard of the loss after {s.ended - killed:.2f} s"
            )
        assert len({str(s.error) for s in streams}) == 1, [str(s.error) for s in streams]
        state = sup.wait_for((Failed,), 10)
        assert state.cause == "worker_lost" and state.lost_workers == [w2.endpoint]
        time.sleep(1.0)  # a second report would come from the watchers within this
        assert sum(isinstance(s, Failed) for s in states) == 1, states
        # the reload policy's one call: without the lost worker, and it answers again
        w1.wait_idle()
        sup.reload_without_lost()
        again = sup.wait_for((Ready, Failed), 60)
        assert isinstance(again, Ready), again
        assert alone(again.url, sup.token, QUESTIONS[2], 8).text
    finally:
        sup.stop()


def test_the_head_reloads_once_by_itself_after_a_worker_lost_mid_batch(
    demo_model, start_worker, tmp_path
):
    # The same loss through the head, as the window and serve meet it: every answer hears
    # it within 2 s, the head records one incident and loads again without the worker.
    w1, w2 = start_worker(), start_worker()
    head = Head(
        persist=False,
        state_dir=tmp_path / "head",
        automatic=True,
        watch=WatchSettings(interval_s=0.3),
    )
    try:
        for w in (w1, w2):
            head.add_worker(w.endpoint)
        head.load(_split_plan(demo_model, w1, w2))
        deadline = time.monotonic() + 90
        while not isinstance(head.state, Ready | Failed) and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = head.state
        assert isinstance(ready, Ready), ready
        streams = four_long_answers(ready.url, ready.token)
        w2.kill()
        killed = time.monotonic()
        for s in streams:
            s.join(30)
        assert all(isinstance(s.error, EngineUnavailable) for s in streams), streams
        assert max(s.ended for s in streams) - killed < 2.0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = head.state
            if isinstance(state, Ready) and state.url != ready.url:
                break
            time.sleep(0.1)
        again = head.state
        assert isinstance(again, Ready) and again.plan.workers == [w1.endpoint], again
        assert [i.cause for i in head.incidents] == ["worker_lost"]
        assert head.incidents[0].lost_workers == [w2.endpoint]
        assert alone(again.url, again.token, QUESTIONS[2], 8).text
    finally:
        head.close()
