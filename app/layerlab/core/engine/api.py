"""The engine's OpenAI-compatible HTTP API (FastAPI + uvicorn), on loopback with a token.

One path serves LayerLab's chat pane and any other local app. This module holds the line
(one answer at a time) and LayerLab's own routes (health, placement, status, the chat's
token meter); the OpenAI routes live in openai_routes.py, their requests in
openai_protocol.py.
The model answers `parallel` requests together (batch_decoder.py); a few more wait in line
in each lane, the rest are told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from layerlab.core.api_auth import api_error as error
from layerlab.core.api_auth import new_api, require_bearer_key
from layerlab.core.engine.batch_decoder import DONE, Lane
from layerlab.core.engine.model_session import ModelSession
from layerlab.core.engine.openai_protocol import ChatMessage
from layerlab.core.engine.openai_routes import read_request, register
from layerlab.core.engine.outlet import ONLY_AT_THE_END, WAKE_EVERY_S, LoopOutlet
from layerlab.core.engine.sse import EventStream
from layerlab.core.engine.whole_reply import WholeReply

MAX_WAITING = 4  # turns a request may wait: per lane, MAX_WAITING x parallel requests queue


class MeterRequest(BaseModel):
    """What the chat's context meter counts: messages (through the model's own template, as
    an answer to them would see them) or plain text."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] | None = None
    text: str | None = None


class BenchRequest(BaseModel):
    """A llama-bench style measurement on the loaded model (core/engine/measure.py)."""

    model_config = ConfigDict(extra="forbid")
    n_prompt: int = Field(default=512, ge=0, le=8192)
    n_gen: int = Field(default=128, ge=0, le=8192)
    reps: int = Field(default=5, ge=1, le=50)
    seed: int = 42


LANE_HEADER = "x-layerlab-lane"  # "window": LayerLab's own chat window (engine key only)


class Line:
    """Who may wait for the model: `parallel` answers run together, and each lane holds at
    most MAX_WAITING turns of requests more (MAX_WAITING x parallel); beyond that a request
    is told so (429).

    Two lanes: the chat window's own requests and everyone else's (the API). The decoder
    offers a free slot to the window's lane first, so a flood of API requests never makes the
    person at the window wait longer than one slot's turn. The header that marks the window's
    requests is only ever read on the engine's own port, behind the engine's key: `serve`
    and other apps reach it without that header, in the API's lane.

    A request takes its place in line when it is admitted, before any answer starts, and gives
    it back when it ends, however it ends (finished, stopped, disconnected, failed). Counting
    only once a streaming answer began let a burst slip past the limit, and a client that gave
    up while queued kept its place for the life of the engine.
    """

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = parallel
        self.in_line: dict[str, int] = {"window": 0, "api": 0}  # admitted, not yet ended

    @property
    def limit(self) -> int:
        """Requests one lane may hold: those answered and MAX_WAITING turns of them waiting
        (ten requests at once to four slots all wait, as llama-server's would)."""
        return self.parallel * (1 + MAX_WAITING)

    def admit(self, lane: Lane = "api") -> Place | None:
        """A place in line, or None when the lane is full."""
        if self.in_line[lane] >= self.limit:
            return None
        self.in_line[lane] += 1
        return Place(self, lane)


class Place:
    """One request's place in line; leaving twice is harmless, so every exit path may."""

    def __init__(self, line: Line, lane: Lane = "api") -> None:
        self._line: Line | None = line
        self.lane: Lane = lane

    def leave(self) -> None:
        if self._line is not None:
            self._line.in_line[self.lane] -= 1
            self._line = None


def lane_of(request: Request) -> Lane:
    return "window" if request.headers.get(LANE_HEADER, "").lower() == "window" else "api"


def create_app(session: ModelSession, token: str, model_id: str) -> FastAPI:
    app = new_api("LayerLab engine")
    decoder = session.decoder
    assert decoder is not None
    line = Line(decoder.parallel)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench")  # one at a time
    started = time.time()

    require_bearer_key(app, token)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_id,
            "state": "generating" if session.generating else "idle",
        }

    @app.get("/layerlab/placement")
    async def placement() -> dict:
        return asdict(session.placement) if session.placement else {}

    @app.get("/layerlab/status")
    async def status() -> dict:
        return {
            "state": "generating" if session.generating else "idle",
            "since_progress_s": time.monotonic() - session.last_progress,
            "warm": session.warm,  # a decode has finished since the load
            "parallel": decoder.parallel,
            "running": decoder.running,
            "waiting": decoder.waiting(),
            "moves": decoder.moves,  # answers moved between slots to close a gap
            "borrowed": decoder.borrowed,  # prompt tokens copied from another slot's cache
            "greedy_on_device": decoder.greedy_on_device,  # picked on the output's worker
            "sampled_on_device": decoder.sampled_on_device,  # greedy tokens picked there
            "plan": session.plan.to_dict(),
            "loaded": session.loaded(),
        }

    @app.post("/layerlab/tokenize")
    async def tokenize(request: Request):
        req = await read_request(request, MeterRequest)
        if not isinstance(req, MeterRequest):
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

    @app.post("/layerlab/bench")
    async def bench(request: Request):
        # The bench takes its turn in the same line as answers: never two users of the model.
        req = await read_request(request, BenchRequest)
        if not isinstance(req, BenchRequest):
            return req
        place = line.admit(lane_of(request))
        if place is None:
            return error(429, "The model is busy answering other requests.", "busy")
        from layerlab.core.engine.measure import measure

        stop = threading.Event()

        def run() -> object:
            # Running answers finish first and none start meanwhile: never two users.
            with decoder.exclusive(stop):
                return measure(session, req.n_prompt, req.n_gen, req.reps, stop, req.seed)

        try:
            loop = asyncio.get_running_loop()
            job = loop.run_in_executor(executor, run)
            try:
                result = await asyncio.shield(job)
            except asyncio.CancelledError:
                stop.set()  # the client left: end between decodes, then give the model back
                with contextlib.suppress(InterruptedError):
                    await job
                raise
        except (ValueError, RuntimeError, InterruptedError) as e:
            return error(400, f"The bench could not run: {e}", "bench_error")
        finally:
            place.leave()
        return result.to_dict()

    async def _generate(job) -> AsyncIterator[list[tuple[int, object]]]:
        """A request's (choice index, Piece | Ending), a list for each decoder turn that
        handed some over (one write to the client for them all); for a whole reply, one
        list at each answer's end."""
        wake = WAKE_EVERY_S if job.stream else ONLY_AT_THE_END
        outlet = LoopOutlet(asyncio.get_running_loop(), wake)
        stop = threading.Event()
        try:
            left = job.start(stop, outlet)  # a prompt too long is refused here, before any answer
            while left:
                turn = []
                for index, item in await outlet.take():
                    if item is DONE:
                        left -= 1
                    elif isinstance(item, Exception):  # llama.cpp errors, as Python's
                        raise item
                    else:
                        turn.append((index, item))
                yield turn
        finally:
            # Finished, failed, or the client left (Stop): the decoder frees the slots at
            # its next step.
            stop.set()

    app.state.line = line
    app.state.lane_of = lane_of
    # a streaming answer gives its place back when the response ends, even when the client
    # left before the answer's generator ever ran (its own cleanup would then not run)
    app.state.stream_in_line = lambda place, events: EventStream(events, place.leave)
    # and a whole reply is stopped when its client leaves before it is written
    app.state.whole_in_line = lambda place, reply: WholeReply(reply, place.leave)
    register(app, session, _generate, model_id, started)
    return app
