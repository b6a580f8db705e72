"""Time per token spent waiting on each worker: the relay's meter, the answer's bracket, and
a real 1:3 split over two paired loopback workers through the real engine and supervisor."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from layerlab.core.cluster import relay
from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.cluster.token_waits import AnswerWaits, TokenWait
from layerlab.core.engine.client import Delta, Finished
from layerlab.core.engine.supervisor import EngineSupervisor, Failed, Ready, WatchSettings
from layerlab.core.load_plan import DeviceRef, LoadPlan

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def test_the_relay_counts_the_time_from_request_to_answer_not_the_heads_own_time():
    head, head_side = socket.socketpair()  # llama.cpp <-> the relay's 'a'
    worker_side, worker = socket.socketpair()  # the relay's 'b' <-> the worker
    stats: dict = {}
    t = threading.Thread(target=relay.pump, args=(head_side, worker_side, stats), daemon=True)
    t.start()
    try:
        for _ in range(3):
            head.sendall(b"request")
            assert worker.recv(64) == b"request"
            time.sleep(0.05)  # the worker computes
            worker.sendall(b"answer")
            assert head.recv(64) == b"answer"
            time.sleep(0.1)  # the head computes: not waiting on the worker
        waited = stats["waited"]
        assert 3 * 0.05 <= waited < 3 * 0.15, waited
    finally:
        head.close()
        worker.close()
        t.join(5)
        head_side.close()
        worker_side.close()


def test_an_answer_is_bracketed_from_its_first_piece_to_llamas_timings():
    clock = [0.0]
    waited = {"a": 1.0, "b": 5.0}
    published: list[dict] = []
    waits = AnswerWaits(
        lambda: dict(waited), published.append, now=lambda: clock[0], live_every_s=0.5
    )
    waits.piece()  # after the prompt: waiting before this is the prompt's
    for i in range(1, 11):
        clock[0] = i * 0.1
        waited["a"] += 0.002
        waited["b"] += 0.006
        waits.piece()
    live = published[-1]
    assert set(live) == {"a", "b"} and not live["a"].final
    assert live["a"].ms_per_token == pytest.approx(2.0)
    assert live["b"].text == "waits ~6.0 ms/token"
    final = waits.finish({"predicted_n": 10, "predicted_ms": 100.0})
    assert final["b"] == TokenWait(pytest.approx(6.0), 10.0, 10, True)
    assert final["b"].text == "waits 6.0 ms/token" and final["b"].share == pytest.approx(0.6)
    # A worker the answer never waited on (not in this model) is left out.
    waited["c"] = 3.0
    assert "c" not in waits.live()


@pytest.mark.slow
def test_a_1_to_3_split_over_two_links_waits_longer_on_the_bigger_share(
    tmp_path, start_sharing, demo_model
):
    small, big = start_sharing("small-box"), start_sharing("big-box")
    links = HeadLinks(tmp_path / "head", name="desk", watch_retry_s=0.3)
    changed: list[str] = []
    links.on_change = changed.append
    sup = EngineSupervisor(watch=WatchSettings(interval_s=0.5))
    links.attach(sup)
    try:
        for w in (small, big):
            links.pair(w.address, w.code, w.fingerprint)
        plan = LoadPlan(
            str(demo_model),
            n_ctx=1024,
            n_threads=1,
            devices=[DeviceRef.rpc(small.address), DeviceRef.rpc(big.address)],
            tensor_split=[1, 3],
        )
        sup.start(plan)
        ready = sup.wait_for((Ready, Failed), 90)
        assert isinstance(ready, Ready), ready
        waits = links.answer_waits()
        done = None
        for ev in sup.client().stream_chat(STORY, temperature=0, seed=1, max_tokens=64):
            if isinstance(ev, Delta):
                waits.piece()
            elif isinstance(ev, Finished):
                done = ev
        assert done is not None and done.timings["predicted_n"] > 10
        result = waits.finish(done.timings)
        token_ms = done.timings["predicted_ms"] / done.timings["predicted_n"]
        s, b = result[small.address], result[big.address]
        print(f"\n1:3 split: {token_ms:.2f} ms/token; small-box {s.text}, big-box {b.text}")
        assert s.final and b.final and s.tokens == done.timings["predicted_n"]
        assert 0 < s.ms_per_token < b.ms_per_token
        # Both waits happen one after the other within each token (layer split).
        assert s.ms_per_token + b.ms_per_token < token_ms * 1.1
        assert b.ms_per_token < token_ms
        # What the Workers list reads.
        info = links.info(big.address)
        assert info.wait == b and b.text in info.summary
        assert big.address in changed
    finally:
        sup.stop(quiet=True)
        links.close_all()
