"""A greedy answer's token is picked on the worker that holds the output layer (llama.cpp's
backend sampling): the same tokens the head's argmax picks, and only the token comes back,
not the n_vocab logits. A load whose output is on this machine picks on the head."""

from __future__ import annotations

import httpx
import pytest

from layerlab.core.engine.client import EngineClient
from layerlab.core.load_plan import DeviceRef, LoadPlan
from tests.batching.conftest import N_CTX, PARALLEL
from tests.batching.helpers import (
    GREEDY,
    QUESTIONS,
    Stream,
    alone,
    assert_agree,
    bytes_received_from,
    chat,
    together,
)
from tests.conftest import WorkerProcess, free_port_pair
from tests.spine.engine_helpers import load

N_VOCAB = 49152  # the demo's vocabulary: a row of logits is 4 bytes a token


def _plan(demo_model, worker, on_device: bool = True, parallel: int = PARALLEL) -> LoadPlan:
    return LoadPlan(
        str(demo_model),
        n_ctx=N_CTX,
        n_threads=2,
        parallel=parallel,
        devices=[DeviceRef.rpc(worker.endpoint)] if worker else [],
        greedy_on_device=on_device,
        flash_attn=True,
    )


def _status(sup) -> dict:
    return sup.client().status()


def _picked(sup) -> int:
    return _status(sup)["sampled_on_device"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = WorkerProcess(free_port_pair(), tmp_path_factory.mktemp("worker"), threads=2)
    yield w
    w.stop()


def test_greedy_tokens_picked_on_the_worker_are_the_heads_own(demo_model, worker):
    sup, ready = load(_plan(demo_model, worker))
    try:
        assert _status(sup)["greedy_on_device"] is True
        there = together(ready.url, sup.token, QUESTIONS, 24)
        assert [s.error for s in there] == [None] * PARALLEL
        assert _picked(sup) >= sum(s.tokens for s in there) > 0
    finally:
        sup.stop()
    worker.wait_idle()
    head_sup, head = load(_plan(demo_model, worker, on_device=False))
    try:
        assert _status(head_sup)["greedy_on_device"] is False
        here = together(head.url, head_sup.token, QUESTIONS, 24)
        assert _picked(head_sup) == 0
    finally:
        head_sup.stop()
    worker.wait_idle()
    # one argmax over the same logits, in the worker's graph or in numpy: the first of
    # equal bests, so the same text to the byte
    assert [s.text for s in there] == [s.text for s in here]


def test_a_load_on_this_machine_picks_on_the_head(engine):
    # a row of logits here is a copy, not a network transfer: no chains, no reservations
    sup, ready = engine
    assert together(ready.url, sup.token, QUESTIONS[:1], 8)[0].error is None
    status = _status(sup)
    assert status["greedy_on_device"] is False and status["sampled_on_device"] == 0


@pytest.fixture
def on_worker(demo_model, worker):
    """The whole model (output layer included) on the loopback worker, picking there."""
    sup, ready = load(_plan(demo_model, worker))
    yield sup, ready
    sup.stop()
    worker.wait_idle()  # it serves one head at a time: the next test's


def test_an_answer_that_needs_its_logits_runs_beside_greedy_ones(on_worker):
    # logprobs need the whole row on the head: that answer's slot leaves the worker's way,
    # the greedy answers beside it keep it, and each writes what it writes alone
    sup, ready = on_worker
    first = alone(ready.url, sup.token, QUESTIONS[0], 16)
    lp = {**GREEDY, "max_tokens": 16, "logprobs": True, "top_logprobs": 2}
    before = _picked(sup)
    with_logprobs = Stream(EngineClient(ready.url, sup.token), chat(QUESTIONS[0]), lp).start()
    rest = together(ready.url, sup.token, QUESTIONS[1:], 16)
    with_logprobs.join()
    assert with_logprobs.error is None and [s.error for s in rest] == [None] * 3
    # the three greedy answers' tokens (and an end token each, at most) came from the
    # worker; the one with logprobs took none of its 16 there
    assert sum(s.tokens for s in rest) <= _picked(sup) - before <= 3 * 17
    assert_agree([first], [with_logprobs.text])
    again = [alone(ready.url, sup.token, q, 16) for q in QUESTIONS[1:]]
    assert_agree(again, [s.text for s in rest])


@pytest.mark.parametrize("on_device", [True, False], ids=["on the worker", "on the head"])
def test_over_a_worker_only_the_token_comes_back(demo_model, worker, on_device):
    sup, ready = load(_plan(demo_model, worker, on_device))
    try:
        together(ready.url, sup.token, QUESTIONS, 4)  # first graphs, reservations
        before = bytes_received_from("127.0.0.1", worker.port)
        streams = together(ready.url, sup.token, QUESTIONS, 32)
        got = bytes_received_from("127.0.0.1", worker.port) - before
        tokens = sum(s.tokens for s in streams)
        assert [s.error for s in streams] == [None] * PARALLEL and tokens > 0
        per_token = got / tokens
        print(f"{per_token:.0f} bytes from the worker a token, picked on the worker: {on_device}")
        if on_device:
            assert _picked(sup) > 0
            assert per_token < N_VOCAB * 4 / 10, per_token
        else:
            assert per_token >= N_VOCAB * 4, per_token
    finally:
        sup.stop()
        worker.wait_idle()


def test_a_slot_goes_back_and_forth_between_the_worker_and_the_head(demo_model, worker):
    # One slot, so every answer takes the same sequence: greedy (a chain attached), then a
    # sampled answer (detached: llama.cpp's logits again), then greedy once more (a new
    # chain: llama.cpp refuses one attached twice with an abort), then the bench's own use
    # of the context, then greedy again. Each greedy answer is the first one's text.
    sup, ready = load(_plan(demo_model, worker, parallel=1))
    try:
        first = together(ready.url, sup.token, QUESTIONS[:1], 12)[0]
        picked = _picked(sup)
        assert first.error is None and picked >= first.tokens > 0
        sampled = Stream(
            EngineClient(ready.url, sup.token),
            chat(QUESTIONS[1]),
            {"temperature": 0.8, "seed": 7, "max_tokens": 12},
        ).start()
        assert sampled.join().error is None and sampled.text
        assert _picked(sup) == picked  # the sampled answer's tokens came from the head
        again = together(ready.url, sup.token, QUESTIONS[:1], 12)[0]
        assert again.error is None and again.text == first.text
        r = httpx.post(
            ready.url + "/layerlab/bench",
            json={"n_prompt": 16, "n_gen": 4, "reps": 1},
            headers={"Authorization": f"Bearer {sup.token}"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        last = together(ready.url, sup.token, QUESTIONS[:1], 12)[0]
        assert last.error is None and last.text == first.text
        assert _picked(sup) >= picked + again.tokens + last.tokens
    finally:
        sup.stop()
        worker.wait_idle()
