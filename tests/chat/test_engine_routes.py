"""The engine routes the chat needs, over real HTTP: tokenize (the context meter) and plain
completions (Continue; a model without a chat template)."""

from __future__ import annotations

import httpx
import pytest

from layerlab.core.engine.client import Delta, EngineRefused, Finished


def test_tokenize_counts_text_and_messages_through_the_models_template(head):
    client = head.client()
    text = client.tokenize(text="Hello world")
    assert text["tokens"] == 2 and text["prompt"] == "Hello world"
    assert text["n_ctx"] == 2048 and text["chat_template"] is True
    one = client.tokenize(messages=[{"role": "user", "content": "Hi"}])
    two = client.tokenize(
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    )
    assert one["prompt"].endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert two["tokens"] > one["tokens"] > text["tokens"]
    # the same count the model reads: the prompt text tokenized again gives it
    assert client.tokenize(text=one["prompt"])["tokens"] == one["tokens"]


def test_plain_completion_streams_with_timings(head):
    events = list(
        head.client().stream_completion("The capital of France is", temperature=0, max_tokens=4)
    )
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "length"
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert "Paris" in text
    assert events[-1].timings["predicted_n"] >= 1 and events[-1].usage["prompt_tokens"] >= 1


def test_bad_requests_are_refused_in_words(head):
    client = head.client()
    r = httpx.post(client.url + "/v1/completions", json={"prompt": ""}, headers=client._headers)
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
    r = httpx.post(client.url + "/layerlab/tokenize", content=b"{", headers=client._headers)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(client.url + "/layerlab/tokenize", json={"text": "x"})
    assert r.status_code == 401
    with pytest.raises(EngineRefused):
        list(client.stream_completion("", max_tokens=1))
