"""The engine's OpenAI-compatible HTTP API (FastAPI + uvicorn), on loopback with a token.

One path serves LayerLab's chat pane and any other local app: chat completions (SSE
streaming or not), models, health, plus LayerLab's placement and status routes.
The model answers one request at a time; a few more wait in line, the rest are told so.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sse_starlette.sse import EventSourceResponse

from layerlab.core.api_auth import api_error as error
from layerlab.core.api_auth import require_bearer_key
from layerlab.core.engine.model_session import ModelSession

MAX_WAITING = 4  # requests allowed to queue behind the one being answered
COLLECT_INTERVAL_S = 0.003  # how often a streaming answer's new pieces are picked up


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Any] | None = ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0, le=1)
    repeat_penalty: float = Field(default=1.0, gt=0)
    seed: int | None = None
    stop: str | list[str] | None = None

    def sampling(self) -> dict:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "stop": self.stop or [],
        }


class CompletionRequest(ChatRequest):
    """A plain completion (OpenAI's legacy /v1/completions): the prompt goes in as written."""

    messages: list[ChatMessage] = Field(default_factory=list)  # type: ignore[assignment]
    prompt: str = Field(min_length=1)


class TokenizeRequest(BaseModel):
    """What the chat's context meter counts: messages (through the model's own template, as
    an answer to them would see them) or plain text."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] | None = None
    text: str | None = None


class Line:
    """One model, one request at a time; at most MAX_WAITING more wait their turn.

    A request takes its place in line when it is admitted, before any answer starts, and gives
    it back when it ends, however it ends (finished, stopped, disconnected, failed). Counting
    only once a streaming answer began let a burst slip past the limit, and a client that gave
    up while queued kept its place for the life of the engine.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.in_line = 0  # admitted and not yet ended: the one answered plus those waiting

    @property
    def waiting(self) -> int:
        return max(self.in_line - (1 if self.lock.locked() else 0), 0)

    def admit(self) -> Place | None:
        """A place in line, or None when the line is full."""
        if self.in_line >= 1 + MAX_WAITING:
            return None
        self.in_line += 1
        return Place(self)


class Place:
    """One request's place in line; leaving twice is harmless, so every exit path may."""

    def __init__(self, line: Line) -> None:
        self._line: Line | None = line

    def leave(self) -> None:
        if self._line is not None:
            self._line.in_line -= 1
            self._line = None


class _StreamInLine(EventSourceResponse):
    """A streaming answer that gives its place back when the response ends, even when the
    client left before the answer's generator ever ran (its own cleanup would then not run)."""

    def __init__(self, place: Place, content: AsyncIterator[dict], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._place = place

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._place.leave()


def create_app(session: ModelSession, token: str, model_id: str) -> FastAPI:
    app = FastAPI(title="LayerLab engine", docs_url=None, redoc_url=None, openapi_url=None)
    line = Line()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
    started = time.time()

    require_bearer_key(app, token)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_id,
            "state": "generating" if session.generating else "idle",
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "created": int(started), "owned_by": "layerlab"}
            ],
        }

    @app.get("/layerlab/placement")
    async def placement() -> dict:
        return asdict(session.placement) if session.placement else {}

    @app.get("/layerlab/status")
    async def status() -> dict:
        return {
            "state": "generating" if session.generating else "idle",
            "since_progress_s": time.monotonic() - session.last_progress,
            "waiting": line.waiting,
            "plan": session.plan.to_dict(),
            "loaded": session.loaded(),
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as e:
            return error(400, f"The request body is not valid JSON: {e}", "invalid_request_error")
        try:
            req = ChatRequest.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return error(400, f"Invalid request: {where}: {first['msg']}", "invalid_request_error")
        place = line.admit()
        if place is None:
            return error(
                429, "The model is busy answering other requests; try again shortly.", "busy"
            )
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        return await _answer(
            place, req, lambda stop: session.stream_chat(messages, stop, **req.sampling())
        )

    @app.post("/v1/completions")
    async def completion(request: Request):
        req = await _read(request, CompletionRequest)
        if not isinstance(req, CompletionRequest):
            return req
        place = line.admit()
        if place is None:
            return error(
                429, "The model is busy answering other requests; try again shortly.", "busy"
            )
        return await _answer(
            place, req, lambda stop: session.stream_completion(req.prompt, stop, **req.sampling())
        )

    @app.post("/layerlab/tokenize")
    async def tokenize(request: Request):
        req = await _read(request, TokenizeRequest)
        if not isinstance(req, TokenizeRequest):
            return req
        template = session.chat_template()
        if req.messages is not None:
            if not template:
                return error(400, "This model has no chat template.", "no_chat_template")
            messages = [m.model_dump(exclude_none=True) for m in req.messages]
            prompt = session.render(messages)
        else:
            prompt = req.text or ""
        return {
            "tokens": session.count_tokens(prompt),
            "prompt": prompt,
            "n_ctx": session.loaded().get("n_ctx"),
            "chat_template": bool(template),
        }

    async def _read(request: Request, kind: type[BaseModel]):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as e:
            return error(400, f"The request body is not valid JSON: {e}", "invalid_request_error")
        try:
            return kind.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return error(400, f"Invalid request: {where}: {first['msg']}", "invalid_request_error")

    async def _answer(place: Place, req: ChatRequest, start):
        if req.stream:
            return _StreamInLine(place, _sse(start), ping=15)
        try:
            chunks = [c async for c in _generate(start)]
        except Exception as e:
            return error(500, f"The engine failed while answering: {e}", "engine_error")
        finally:
            place.leave()
        return _collect(chunks, model_id)

    async def _generate(start) -> AsyncIterator[dict]:
        async with line.lock:
            loop = asyncio.get_running_loop()
            pieces: collections.deque = collections.deque()
            stop = threading.Event()
            end = object()

            def work() -> None:
                # Pieces are only appended here, never signalled: waking the event loop per
                # token handed it the GIL while this thread still had Python to run before
                # its next decode, putting the loop's HTTP work on every token's critical path
                # (~0.4 ms/token here). The loop collects them on its own tick instead.
                try:
                    for item in start(stop):
                        pieces.append(item)
                except Exception as e:  # llama.cpp errors surface as Python exceptions
                    pieces.append(e)
                finally:
                    pieces.append(end)

            done = loop.run_in_executor(executor, work)
            try:
                while True:
                    if not pieces:
                        await asyncio.sleep(COLLECT_INTERVAL_S)
                        continue
                    item = pieces.popleft()
                    if item is end:
                        break
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                # The client left (Stop) or we finished: either way let the thread wind down
                # before the next request may touch the model.
                stop.set()
                await asyncio.shield(done)

    async def _sse(start) -> AsyncIterator[dict]:
        try:
            async for chunk in _generate(start):
                yield {"data": json.dumps(chunk)}
        except Exception as e:
            yield {"data": json.dumps({"error": {"message": str(e), "type": "engine_error"}})}
        yield {"data": "[DONE]"}

    return app


def _piece(choice: dict) -> str:
    """A chunk's text: a chat chunk's delta, or a plain completion's text."""
    return (choice.get("delta") or {}).get("content") or choice.get("text") or ""


def _collect(chunks: list[dict], model_id: str) -> JSONResponse:
    text = "".join(_piece(c["choices"][0]) for c in chunks if c["choices"])
    last = chunks[-1] if chunks else {}
    finish = last.get("choices", [{}])[0].get("finish_reason") if last else None
    return JSONResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": last.get("usage"),
            "timings": last.get("timings"),
        }
    )
