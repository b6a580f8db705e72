"""Concurrent streams against a real engine, each with its own client."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from layerlab.core.engine.client import Delta, EngineClient, EngineUnavailable, Finished

QUESTIONS = [
    "Write a short poem about the sea.",
    "What is the capital of France? Explain why.",
    "List three fruits and their colours.",
    "Tell me a story about a cat who learns to fly.",
]


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@dataclass
class Stream:
    """One streaming answer run on its own thread: its text, when things happened, how it
    ended."""

    client: EngineClient
    messages: list[dict]
    params: dict
    text: str = ""
    started: float = 0.0
    first_token: float | None = None
    ended: float | None = None
    finished: Finished | None = None
    error: Exception | None = None
    tokens: int = 0
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for ev in self.client.stream_chat(self.messages, **self.params):
                if isinstance(ev, Delta):
                    if self.first_token is None:
                        self.first_token = time.monotonic()
                    self.text += ev.text
                    self.tokens += 1
                else:
                    self.finished = ev
        except (EngineUnavailable, Exception) as e:
            self.error = e
        finally:
            self.ended = time.monotonic()

    def join(self, timeout: float = 180) -> Stream:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        return self

    def wait_tokens(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.tokens < n and self.ended is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.tokens >= n, f"only {self.tokens} pieces came: {self.error or self.text!r}"


GREEDY = {"temperature": 0, "seed": 42}


def alone(url: str, token: str, text: str, max_tokens: int) -> str:
    s = Stream(EngineClient(url, token), chat(text), {**GREEDY, "max_tokens": max_tokens})
    s.start().join()
    assert s.error is None, s.error
    return s.text


def together(url: str, token: str, texts: list[str], max_tokens: int) -> list[Stream]:
    streams = [
        Stream(EngineClient(url, token), chat(t), {**GREEDY, "max_tokens": max_tokens})
        for t in texts
    ]
    for s in streams:
        s.start()
    for s in streams:
        s.join()
    return streams
