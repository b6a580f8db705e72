"""A client for the engine's API: the chat pane uses it, and so can any other program."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx


class EngineUnavailable(RuntimeError):
    """The engine did not answer, or the stream broke off."""


class EngineRefused(RuntimeError):
    """The engine answered with an error (bad request, busy, wrong key)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str | None
    timings: dict = field(default_factory=dict)
    usage: dict = field(default_factory=dict)
    stopped: bool = False


StreamEvent = Delta | Finished


def loopback_http(**kwargs) -> httpx.Client:
    """An HTTP client for the engine on 127.0.0.1.

    No TLS on loopback, so no certificate store: loading it costs ~19 ms of CPU per client,
    which the watchdog's polls paid twice a second while the model was generating. And no
    proxy settings from the environment: the request carries the engine's token.
    """
    return httpx.Client(verify=False, trust_env=False, **kwargs)


class EngineClient:
    """LayerLab's own client. Its answers go in the window's lane (`lane="window"`): the
    engine offers them the next free slot before any other app's (engine/api.py Line)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0, lane: str = "window"):
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "X-LayerLab-Lane": lane}
        self._timeout = httpx.Timeout(timeout, read=None)  # a long prompt may take a while
        self._active: httpx.Response | None = None
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def _get(self, path: str, timeout: float = 5.0) -> dict:
        try:
            with loopback_http(timeout=timeout) as http:
                r = http.get(self.url + path, headers=self._headers)
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"The engine is not answering ({e}).") from e
        if r.status_code != 200:
            raise EngineRefused(r.status_code, _message(r))
        return r.json()

    def health(self) -> dict:
        return self._get("/health")

    def status(self, timeout: float = 5.0) -> dict:
        return self._get("/layerlab/status", timeout)

    def placement(self) -> dict:
        return self._get("/layerlab/placement")

    def tokenize(self, messages: list[dict] | None = None, text: str | None = None) -> dict:
        """Count tokens with the model's own tokenizer: `messages` through its chat template
        (as an answer to them would see them), or plain `text`. Returns {"tokens", "prompt",
        "n_ctx", "chat_template"}; EngineRefused (400) for messages to a model without one."""
        body = {"messages": messages} if messages is not None else {"text": text or ""}
        try:
            with loopback_http(timeout=30.0) as http:
                r = http.post(self.url + "/layerlab/tokenize", json=body, headers=self._headers)
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"The engine is not answering ({e}).") from e
        if r.status_code != 200:
            raise EngineRefused(r.status_code, _message(r))
        return r.json()

    def stream_chat(self, messages: list[dict], **params) -> Iterator[StreamEvent]:
        """Yield Delta per token piece, then one Finished. cancel() from any thread stops it."""
        return self._stream("/v1/chat/completions", {"messages": messages, **params})

    def stream_completion(self, prompt: str, **params) -> Iterator[StreamEvent]:
        """A plain completion of `prompt`, streamed like stream_chat."""
        return self._stream("/v1/completions", {"prompt": prompt, **params})

    def _stream(self, path: str, body: dict) -> Iterator[StreamEvent]:
        self._cancelled.clear()
        body = {**body, "stream": True}
        finished: Finished | None = None
        try:
            with (
                loopback_http(timeout=self._timeout) as http,
                http.stream("POST", self.url + path, json=body, headers=self._headers) as resp,
            ):
                if resp.status_code != 200:
                    resp.read()
                    raise EngineRefused(resp.status_code, _message(resp))
                with self._lock:
                    self._active = resp
                for line in resp.iter_lines():
                    if self._cancelled.is_set():
                        break  # leaving closes the connection; the engine stops generating
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise EngineUnavailable(chunk["error"].get("message", "engine error"))
                    choice = (chunk.get("choices") or [{}])[0]
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if text:
                        yield Delta(text)
                    if "timings" in chunk:
                        finished = Finished(
                            choice.get("finish_reason"),
                            chunk["timings"],
                            chunk.get("usage") or {},
                            bool(chunk.get("stopped_by_client")),
                        )
        except httpx.HTTPError as e:
            if self._cancelled.is_set():
                yield Finished("stop", stopped=True)
                return
            # The person reads this; the transport detail stays on the exception chain.
            raise EngineUnavailable("The answer broke off: the engine stopped.") from e
        finally:
            with self._lock:
                self._active = None
        if finished is None:
            if self._cancelled.is_set():
                yield Finished("stop", stopped=True)
                return
            raise EngineUnavailable("The answer broke off: the engine stopped.")
        yield finished

    def cancel(self) -> None:
        """Stop the stream in progress: closing the connection tells the engine to stop."""
        self._cancelled.set()
        with self._lock:
            if self._active is not None:
                self._active.close()


def _message(resp: httpx.Response) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}"
