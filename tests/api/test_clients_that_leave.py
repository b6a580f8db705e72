"""A client that leaves before its answer is written gives its slot back at once, whether it
asked for a stream or a whole reply: a script's timeout, an app closed mid-answer. Before, a
whole reply went on writing up to max_tokens after its client had gone, holding a slot."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

LONG = [
    {
        "role": "user",
        "content": "Write a very long and detailed story about a lighthouse keeper, "
        "in twenty chapters.",
    }
]
MAX_TOKENS = 800  # ~10 s of the demo here: far longer than the client waits


def _running(api) -> int:
    status = httpx.get(api.base + "/layerlab/status", headers=api.headers, trust_env=False)
    return status.json()["running"]


def _gives_its_slot_back(api, left_at: float) -> float:
    deadline = left_at + 5
    while _running(api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(api) == 0, "the answer went on writing after its client left"
    return time.monotonic() - left_at


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_client_that_leaves_mid_answer_frees_its_slot_and_the_next_is_answered(api, stream):
    t0 = time.monotonic()
    if stream:
        with api.client().chat.completions.create(
            model=api.model, messages=LONG, max_tokens=MAX_TOKENS, temperature=0, stream=True
        ) as chunks:
            for i, _ in enumerate(chunks):
                if i == 5:
                    assert _running(api) == 1  # it was being written when its client left
                    break
    else:
        seen: list[int] = []
        look = threading.Timer(1.0, lambda: seen.append(_running(api)))
        look.start()
        with pytest.raises(openai.APITimeoutError):
            api.client(timeout=1.5).chat.completions.create(
                model=api.model, messages=LONG, max_tokens=MAX_TOKENS, temperature=0
            )
        look.join()
        assert seen == [1]  # it was being written when its client left
    left_at = time.monotonic()
    assert left_at - t0 < 8, "the answer ended before its client left: nothing was tried"
    took = _gives_its_slot_back(api, left_at)
    assert took < 2, took
    reply = api.client().chat.completions.create(
        model=api.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content
