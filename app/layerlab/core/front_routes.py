"""The HTTP front on a head's engine: the app `layerlab serve` runs and the window's "Let
other apps use this model" switch opens (core/api_front.py). It stands in front of the head's
engine, so a lost worker or a dead engine becomes an API error and a /health that says what
happened, never a dead process; the head's reload policy brings the model back. Routes and
payloads are the engine's own; every route but /health wants the API key.

Imported only when a front starts, so the window does not load the web stack to open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from layerlab.core.api_auth import api_error, new_api, require_bearer_key
from layerlab.core.api_front import HeadLike
from layerlab.core.engine.supervisor import Ready
from layerlab.core.engine.whole_reply import WholeReply


def _unavailable(head: HeadLike) -> JSONResponse:
    _, body = head.health()
    message = body.get("message") or f"The model is {body['status']}; try again shortly."
    return api_error(503, message, "engine_unavailable")


def _as_loaded_model(body: bytes, model: str) -> bytes:
    """The request with its `model` set to the loaded one (the person allowed any name:
    clients that insist on their own model names still get answers)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body  # the engine says what is wrong with it
    if isinstance(data, dict) and data.get("model") not in (None, model):
        data["model"] = model
        return json.dumps(data).encode()
    return body


def create_front(head: HeadLike, api_key: str, answer_any_model: bool = False) -> FastAPI:
    """The API in front of the head's engine. With `answer_any_model` a request naming
    another model is answered by the loaded one; without it, that is the engine's 404."""
    app = new_api("LayerLab")

    require_bearer_key(app, api_key)

    @app.get("/health")
    async def health():
        code, body = head.health()
        return JSONResponse(body, status_code=code)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request):
        state = head.supervisor.state
        if not isinstance(state, Ready):
            return _unavailable(head)
        url = f"{state.url}/{path}"
        headers = {
            "Authorization": f"Bearer {head.supervisor.token}",
            "Content-Type": request.headers.get("content-type", "application/json"),
        }
        body = await request.body()
        if answer_any_model and request.method == "POST" and body:
            body = _as_loaded_model(body, state.model)
        # The engine's answer, through a WholeReply: a whole reply's headers come only when
        # it is written, and a client that left before must stop it (the upstream request
        # is cancelled, and the engine sees its own client go).
        return WholeReply(lambda: _forwarded(head, request.method, url, body, headers))

    return app


async def _forwarded(head: HeadLike, method: str, url: str, body: bytes, headers: dict) -> Response:
    # loopback to our own engine: no TLS store to load, no proxy from the environment
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, read=None), verify=False, trust_env=False
    )
    try:
        upstream = await client.send(
            client.build_request(method, url, content=body, headers=headers), stream=True
        )
    except httpx.HTTPError:
        await client.aclose()
        return _unavailable(head)
    except asyncio.CancelledError:  # the client left while the engine wrote a whole reply
        await client.aclose()
        raise
    ctype = upstream.headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        try:
            data = await upstream.aread()
        finally:
            await upstream.aclose()
            await client.aclose()
        return Response(data, status_code=upstream.status_code, media_type=ctype or None)
    return StreamingResponse(
        _relay(upstream, client, head, len(head.incidents)), media_type="text/event-stream"
    )


async def _relay(
    upstream: httpx.Response, client: httpx.AsyncClient, head: HeadLike, incidents_before: int
) -> AsyncIterator[bytes]:
    """Pass SSE through; if the engine goes away mid-answer, end with an error event."""
    tail = b""
    try:
        async for chunk in upstream.aiter_raw():
            tail = (tail + chunk)[-64:]
            yield chunk
        if b"data: [DONE]" not in tail:
            # The connection just closed (the engine process died) without an error.
            raise httpx.RemoteProtocolError("the engine closed the stream early")
    except httpx.HTTPError:
        # Give the supervisor a moment to find out which worker took the engine down (it may
        # already be reloading without it, so read the incident, not the current state).
        for _ in range(60):
            if len(head.incidents) > incidents_before:
                break
            await asyncio.sleep(0.05)
        incident = head.incidents[-1] if len(head.incidents) > incidents_before else None
        err = {
            "error": {
                "message": incident.message if incident else "The engine stopped.",
                "type": "engine_lost",
                "lost_workers": incident.lost_workers if incident else [],
            }
        }
        yield f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode()
    finally:
        await upstream.aclose()
        await client.aclose()
