"""Concurrent streams against a real engine, each with its own client."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field

import httpx

from layerlab.core.engine.client import Delta, EngineClient, EngineUnavailable, Finished
from tests.batching.conftest import PARALLEL

QUESTIONS = [
    "Write a short poem about the sea.",
    "What is the capital of France? Explain why.",
    "List three fruits and their colours.",
    "Tell me a story about a cat who learns to fly.",
]

# a system prompt only the shared-prefix tests send: no slot holds it before they do
HOUSE_RULES = (
    "You answer for the Okafor household's home lab. Keep answers short and plain, use "
    "metric units, and say so when you are not sure of something."
)


def chat(text: str, system: str | None = None) -> list[dict]:
    said = [{"role": "system", "content": system}] if system else []
    return [*said, {"role": "user", "content": text}]


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


# llama.cpp's CPU kernels do not round alike for one row and for several: its llamafile
# sgemm takes a matrix product only from 2 rows up (0c1e570, sgemm.cpp "only enable sgemm
# for prompt processing"), for Q8_0, Q4_0, Q5_0, IQ4_NL and float weights. The demo's
# output matrix is Q8_0, so an answer's logits alone (1 row) and in a batch (4 rows) differ
# in the last digits, and where its two best tokens are that close a greedy answer may
# take the other one. Nothing before the logits differs (Q4_1 layers and separate KV
# streams round alike), so two texts may part only at such a near-tie: anything else (a
# wrong cache, another answer's tokens) parts them where the best token clearly won.
NEAR_TIE = 0.01  # logits apart; the two kernels differ by ~1e-5 here


@dataclass
class Alone:
    """An answer run by itself, and for each token how far its best logit led the next."""

    text: str
    tokens: list[tuple[bytes, float]]  # (the token's bytes, best minus second logprob)

    def agrees_with(self, other: str) -> str | None:
        """None when `other` is this text or parts from it only at a near-tie; else why not."""
        mine, theirs = self.text.encode(), other.encode()
        if mine == theirs:
            return None
        at = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
        at = min(len(mine), len(theirs)) if at is None else at
        end = 0
        for i, (piece, margin) in enumerate(self.tokens):
            end += len(piece)
            if end > at or (end == at and at == len(mine)):
                if margin < NEAR_TIE:
                    return None
                return (
                    f"they part at token {i} ({piece!r}), where the best token led by "
                    f"{margin:.4f}: not a near-tie\nalone:    {self.text!r}\ntogether: {other!r}"
                )
        return f"the other text runs on past this one's end\nalone: {self.text!r}\n{other!r}"


def alone(
    url: str, token: str, text: str, max_tokens: int, system: str | None = None, **params
) -> Alone:
    """The answer with nothing else running, with each token's lead (top_logprobs=2)."""
    body = {
        **GREEDY,
        **params,
        "messages": chat(text, system),
        "max_tokens": max_tokens,
        "logprobs": True,
        "top_logprobs": 2,
    }
    with httpx.Client(timeout=180) as http:
        r = http.post(
            url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    tokens = []
    for t in choice["logprobs"]["content"]:
        top = sorted((a["logprob"] for a in t["top_logprobs"]), reverse=True)
        tokens.append((bytes(t["bytes"]), top[0] - top[1] if len(top) > 1 else float("inf")))
    answer = Alone(choice["message"]["content"] or "", tokens)
    # a stop string may cut the last token short
    assert b"".join(p for p, _ in tokens).startswith(answer.text.encode()), (answer, tokens)
    return answer


def assert_agree(alone_answers: list[Alone], texts: list[str]) -> None:
    assert len(alone_answers) == len(texts)
    why = [a.agrees_with(t) for a, t in zip(alone_answers, texts, strict=True)]
    assert why == [None] * len(texts), "\n".join(w for w in why if w)


def together(
    url: str, token: str, texts: list[str], max_tokens: int, system: str | None = None
) -> list[Stream]:
    streams = [
        Stream(EngineClient(url, token), chat(t, system), {**GREEDY, "max_tokens": max_tokens})
        for t in texts
    ]
    for s in streams:
        s.start()
    for s in streams:
        s.join()
    return streams


def forget_in_every_slot(url: str, token: str, slots: int = PARALLEL) -> None:
    """A long unrelated answer in every slot: what they held before is gone from all."""
    together(url, token, [f"Count from {i} to 40." for i in range(slots)], 40)


def bytes_received_from(host: str, port: int) -> int:
    """Bytes this machine's established sockets have read from host:port (`ss -ti`): what a
    worker sent the head over its RPC link."""
    out = subprocess.run(
        ["ss", "-Htin", "state", "established", "dst", f"{host}:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(
        int(word.split(":", 1)[1]) for word in out.split() if word.startswith("bytes_received:")
    )
