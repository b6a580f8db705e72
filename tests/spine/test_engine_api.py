"""The engine's HTTP API, spoken to with real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from layerlab.core.engine.client import EngineClient
from layerlab.core.load_plan import LoadPlan
from tests.spine.engine_helpers import answer, load


@pytest.fixture(scope="module")
def engine(demo_model):
    sup, ready = load(LoadPlan(str(demo_model), n_ctx=1024, n_threads=2))
    yield sup, ready
    sup.stop()


def auth(sup) -> dict:
    return {"Authorization": f"Bearer {sup.token}"}


def test_listens_on_loopback_only(engine):
    _, ready = engine
    assert ready.url.startswith("http://127.0.0.1:")


def test_no_token_or_wrong_token_is_401(engine):
    _sup, ready = engine
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = httpx.post(ready.url + "/v1/chat/completions", json=body)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    r = httpx.post(
        ready.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert httpx.get(ready.url + "/v1/models").status_code == 401
    # /health says only that it is alive, so a launcher can wait on it without the key.
    assert httpx.get(ready.url + "/health").json()["status"] == "ok"


def test_models_lists_the_loaded_model(engine):
    sup, ready = engine
    data = httpx.get(ready.url + "/v1/models", headers=auth(sup)).json()
    assert [m["id"] for m in data["data"]] == [ready.model]


def test_non_streaming_completion_has_text_usage_and_timings(engine):
    sup, ready = engine
    body = {
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 12,
        "temperature": 0,
    }
    r = httpx.post(ready.url + "/v1/chat/completions", json=body, headers=auth(sup), timeout=60)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"].strip()
    assert data["usage"]["completion_tokens"] == 12
    t = data["timings"]
    assert t["prompt_n"] > 5 and t["prompt_ms"] > 0 and t["predicted_n"] == 11


def test_streaming_completion_ends_with_timings_and_done(engine):
    sup, ready = engine
    body = {
        "messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": 10,
        "temperature": 0,
        "stream": True,
    }
    lines = []
    with httpx.stream(
        "POST", ready.url + "/v1/chat/completions", json=body, headers=auth(sup), timeout=60
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "timings" in chunks[-1] and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "/" not in chunks[0]["model"]  # the model id, not a path into the user's home


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"{not json", "not valid JSON"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature"),
    ],
)
def test_malformed_requests_get_400_with_a_message(engine, payload, words):
    sup, ready = engine
    r = httpx.post(
        ready.url + "/v1/chat/completions",
        content=payload,
        headers={**auth(sup), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert words in r.json()["error"]["message"]


def test_second_request_while_streaming_waits_its_turn(engine):
    sup, _ready = engine
    client = sup.client()
    results: dict[str, str] = {}

    def first():
        results["first"] = answer(client, max_tokens=40)[0]

    t = threading.Thread(target=first)
    t.start()
    second = sup.client()
    text, done = answer(second, messages=[{"role": "user", "content": "Say yes."}], max_tokens=5)
    t.join(60)
    assert results["first"] and text and done.finish_reason in ("length", "stop")


def test_too_many_waiting_requests_are_refused_clearly(engine):
    sup, ready = engine
    from layerlab.core.engine.api import MAX_WAITING

    # One long answer keeps the model busy while the others arrive, in the same lane (the
    # chat window's own requests have a lane of their own).
    busy = EngineClient(ready.url, sup.token, lane="api")
    stream = busy.stream_chat(
        [{"role": "user", "content": "Tell a long story."}], max_tokens=2000, temperature=0
    )
    next(stream)
    codes: list[int] = []
    messages: list[str] = []

    def ask():
        r = httpx.post(
            ready.url + "/v1/chat/completions",
            headers=auth(sup),
            timeout=120,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        )
        codes.append(r.status_code)
        if r.status_code != 200:
            messages.append(r.json()["error"]["message"])

    threads = [threading.Thread(target=ask) for _ in range(MAX_WAITING + 3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while codes.count(429) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    busy.cancel()
    for _ in stream:
        pass
    for t in threads:
        t.join(120)
    assert codes.count(429) == 3 and codes.count(200) == MAX_WAITING, codes
    assert all("busy" in m for m in messages)
    assert httpx.get(ready.url + "/health").json()["status"] == "ok"


def test_stop_mid_stream_ends_quickly_and_the_engine_answers_again(engine):
    sup, _ready = engine
    client = sup.client()
    got = []
    for ev in client.stream_chat(
        [{"role": "user", "content": "Tell a long story."}], max_tokens=400, temperature=0
    ):
        got.append(ev)
        if len(got) == 5:
            client.cancel()
    assert got[-1].__class__.__name__ == "Finished" and got[-1].stopped
    assert len(got) < 50
    text, _ = answer(sup.client(), max_tokens=4)
    assert text


def _long_answer(sup):
    """Start one long streaming answer that keeps the model busy; returns (client, stream).
    It goes in the API lane, where the requests it keeps waiting go too."""
    busy = EngineClient(sup.state.url, sup.token, lane="api")
    stream = busy.stream_chat(
        [{"role": "user", "content": "Tell a long story."}], max_tokens=2000, temperature=0
    )
    next(stream)
    return busy, stream


def _end(busy, stream) -> None:
    busy.cancel()
    for _ in stream:
        pass


def _waiting(sup, ready) -> int:
    return httpx.get(ready.url + "/layerlab/status", headers=auth(sup)).json()["waiting"]


def test_clients_that_give_up_while_queued_give_their_place_back(engine):
    sup, ready = engine
    from layerlab.core.engine.api import MAX_WAITING

    busy, stream = _long_answer(sup)
    gave_up: list[bool] = []

    def give_up() -> None:
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
        try:
            with httpx.stream(
                "POST",
                ready.url + "/v1/chat/completions",
                json=body,
                headers=auth(sup),
                timeout=httpx.Timeout(10, read=1.0),
            ) as r:
                for _ in r.iter_lines():
                    pass
        except httpx.ReadTimeout:
            gave_up.append(True)

    quitters = [threading.Thread(target=give_up) for _ in range(MAX_WAITING)]
    for t in quitters:
        t.start()
    for t in quitters:
        t.join(30)
    assert len(gave_up) == MAX_WAITING  # they timed out while the long answer ran
    deadline = time.monotonic() + 5
    while _waiting(sup, ready) and time.monotonic() < deadline:
        time.sleep(0.05)  # the engine notices the disconnects
    assert _waiting(sup, ready) == 0
    _end(busy, stream)

    # Later, while something is generating, a new request waits its turn instead of 429.
    busy, stream = _long_answer(sup)
    try:
        r = httpx.post(
            ready.url + "/v1/chat/completions",
            headers=auth(sup),
            timeout=1.0,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        )
        pytest.fail(f"answered at once while the model was busy: {r.status_code} {r.text}")
    except httpx.ReadTimeout:
        pass  # waiting in line, as it should
    finally:
        _end(busy, stream)


def _status_code(conn: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        head += conn.recv(64)
    return int(head.split(b" ")[1])


def test_a_burst_of_streaming_requests_is_counted_at_the_door(engine):
    sup, ready = engine
    from layerlab.core.engine.api import MAX_WAITING

    busy, stream = _long_answer(sup)
    port = int(ready.url.rsplit(":", 1)[1])
    body = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {sup.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    # Connected first, then sent back to back: the requests arrive together, as a burst does.
    conns = [
        socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(MAX_WAITING + 3)
    ]
    try:
        for c in conns:
            c.sendall(request)
        codes = [_status_code(c) for c in conns]
    finally:
        for c in conns:
            c.close()
        _end(busy, stream)
    assert codes.count(429) == 3 and codes.count(200) == MAX_WAITING, codes
