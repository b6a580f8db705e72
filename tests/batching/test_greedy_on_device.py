"""A greedy answer's token is picked where the output layer is (llama.cpp's backend
sampling): the same tokens the host's argmax picks, and over a worker only the token comes
back, not the n_vocab logits."""

from __future__ import annotations

import subprocess

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
    chat,
    together,
)
from tests.spine.engine_helpers import load

N_VOCAB = 49152  # the demo's vocabulary: a row of logits is 4 bytes a token


def _plan(demo_model, on_device: bool, devices=()) -> LoadPlan:
    return LoadPlan(
        str(demo_model),
        n_ctx=N_CTX,
        n_threads=2,
        parallel=PARALLEL,
        devices=list(devices),
        greedy_on_device=on_device,
    )


def _picked(sup) -> int:
    return sup.client().status()["sampled_on_device"]


def test_greedy_tokens_picked_on_the_device_are_the_hosts_own(engine, demo_model):
    sup, ready = engine  # greedy_on_device is the plan's default
    before = _picked(sup)
    on_device = together(ready.url, sup.token, QUESTIONS, 24)
    assert [s.error for s in on_device] == [None] * PARALLEL
    picked = _picked(sup) - before
    assert picked >= sum(s.tokens for s in on_device) > 0, picked

    host_sup, host = load(_plan(demo_model, on_device=False))
    try:
        on_host = together(host.url, host_sup.token, QUESTIONS, 24)
        assert _picked(host_sup) == 0
    finally:
        host_sup.stop()
    # one argmax over the same logits, in the graph or in numpy: the first of equal bests
    assert [s.text for s in on_device] == [s.text for s in on_host]


def test_an_answer_that_needs_its_logits_runs_beside_greedy_ones(engine):
    # logprobs need the whole row on the host: that answer's slot leaves the device's way,
    # the greedy answers beside it keep it, and each writes what it writes alone
    sup, ready = engine
    first = alone(ready.url, sup.token, QUESTIONS[0], 16)
    lp = {**GREEDY, "max_tokens": 16, "logprobs": True, "top_logprobs": 2}
    before = _picked(sup)
    with_logprobs = Stream(EngineClient(ready.url, sup.token), chat(QUESTIONS[0]), lp).start()
    rest = together(ready.url, sup.token, QUESTIONS[1:], 16)
    with_logprobs.join()
    assert with_logprobs.error is None and [s.error for s in rest] == [None] * 3
    # the three greedy answers' tokens (and an end token each, at most) came from the
    # device; the one with logprobs took none of its 16 there
    assert sum(s.tokens for s in rest) <= _picked(sup) - before <= 3 * 17
    assert_agree([first], [with_logprobs.text])
    again = [alone(ready.url, sup.token, q, 16) for q in QUESTIONS[1:]]
    assert_agree(again, [s.text for s in rest])


def _bytes_from(port: int) -> int:
    """Bytes this machine's sockets have read from 127.0.0.1:port (the head's RPC link)."""
    out = subprocess.run(
        ["ss", "-Htin", "state", "established", "dst", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(
        int(word.split(":", 1)[1]) for word in out.split() if word.startswith("bytes_received:")
    )


@pytest.mark.parametrize("on_device", [True, False], ids=["on the worker", "on the head"])
def test_over_a_worker_only_the_token_comes_back(demo_model, start_worker, on_device):
    w = start_worker()
    sup, ready = load(_plan(demo_model, on_device, [DeviceRef.rpc(w.endpoint)]))
    try:
        together(ready.url, sup.token, QUESTIONS, 4)  # first graphs, reservations
        before = _bytes_from(w.port)
        streams = together(ready.url, sup.token, QUESTIONS, 32)
        got = _bytes_from(w.port) - before
        tokens = sum(s.tokens for s in streams)
        assert [s.error for s in streams] == [None] * PARALLEL and tokens > 0
        per_token = got / tokens
        print(f"{per_token:.0f} bytes from the worker a token, picked on device: {on_device}")
        if on_device:
            assert _picked(sup) > 0
            assert per_token < N_VOCAB * 4 / 10, per_token
        else:
            assert per_token >= N_VOCAB * 4, per_token
    finally:
        sup.stop()


def test_a_slot_goes_back_and_forth_between_the_device_and_the_host(demo_model):
    # One slot, so every answer takes the same sequence: greedy (a chain attached), then a
    # sampled answer (detached: llama.cpp's logits again), then greedy once more (a new
    # chain: llama.cpp refuses one attached twice with an abort), then the bench's own use
    # of the context, then greedy again. Each greedy answer is the first one's text.
    plan = LoadPlan(str(demo_model), n_ctx=N_CTX, n_threads=2, parallel=1)
    sup, ready = load(plan)
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
        assert _picked(sup) == picked  # the sampled answer's tokens came from the host
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
