"""The engine's server-sent events response on a real uvicorn server: events arrive as they
are made, a long silence gets a keep-alive comment, and a client that leaves stops the
events' generator (which is how an answer learns its reader has gone)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from layerlab.core.engine import sse


class Served:
    def __init__(self, app) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    monkeypatch.setattr(sse, "STALLED_S", 1.0)
    state = {"ended": 0, "cleaned": threading.Event(), "made": 0}

    async def events(n: int, pause: float, size: int):
        try:
            for i in range(n):
                await asyncio.sleep(pause)
                state["made"] += 1
                yield f"data: {i}{' ' * size}\n\n".encode()
        finally:
            state["cleaned"].set()

    async def route(request):
        n, pause = int(request.query_params["n"]), float(request.query_params["pause"])
        size = int(request.query_params.get("size", 0))

        def ended() -> None:
            state["ended"] += 1

        return sse.EventStream(events(n, pause, size), ended)

    s = Served(Starlette(routes=[Route("/events", route)]))
    yield s, state
    s.stop()


def test_events_come_in_order_with_a_comment_in_a_long_silence(served):
    s, state = served
    with httpx.Client(timeout=10) as http:
        r = http.get(s.url + "/events", params={"n": 3, "pause": 0.7})
    assert r.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in r.text.split("\n") if line]
    assert [line for line in lines if line.startswith("data:")] == ["data: 0", "data: 1", "data: 2"]
    assert ": ping" in lines  # 0.7 s between events, pings after 0.3 s of silence
    assert state["ended"] == 1 and state["cleaned"].is_set()


def test_a_client_that_leaves_stops_the_generator(served):
    s, state = served
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", s.url + "/events", params={"n": 10_000, "pause": 0.01}) as r,
    ):
        for line in r.iter_lines():
            if line == "data: 5":
                break  # leaving the block closes the connection
    assert state["cleaned"].wait(5), "the generator ran on after its reader left"
    made = state["made"]
    time.sleep(0.3)
    assert state["made"] == made < 10_000
    deadline = time.monotonic() + 5
    while state["ended"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state["ended"] == 1


def test_a_client_that_stops_reading_is_let_go_and_gives_its_place_back(served):
    s, state = served
    host, port = s.url.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((host, int(port)))
    try:
        # asks, then never reads again (a stopped app): the server's sends fill the socket
        client.sendall(b"GET /events?n=100000&pause=0&size=60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert state["cleaned"].wait(10), "the events ran on for a client that reads nothing"
        deadline = time.monotonic() + 5
        while state["ended"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state["ended"] >= 1  # its place in line is back
        assert state["made"] < 100_000
    finally:
        client.close()
