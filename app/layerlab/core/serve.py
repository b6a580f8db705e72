"""`layerlab serve`: a head without a window. It supervises the engine exactly as the window
does and stands in front of it, so a lost worker becomes an API error and a /health that
says what happened, never a dead process. Routes and payloads are the engine's own."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from layerlab.core.api_auth import api_error, require_bearer_key
from layerlab.core.engine.supervisor import EngineState, EngineSupervisor, Failed, Loading, Ready
from layerlab.core.load_plan import LoadPlan


@dataclass
class Incident:
    time: float
    message: str
    lost_workers: list[str] = field(default_factory=list)


class HeadlessHead:
    """The supervisor plus the policy a headless head needs: reload without lost workers."""

    def __init__(self, plan: LoadPlan, auto_reload: bool = True, log=print):
        self.plan = plan
        self.auto_reload = auto_reload
        self.incidents: list[Incident] = []
        self._log = log
        self.supervisor = EngineSupervisor(on_state=self._on_state)

    def start(self) -> None:
        self.supervisor.start(self.plan)

    def stop(self) -> None:
        self.supervisor.stop(quiet=True)

    def _on_state(self, state: EngineState) -> None:
        if isinstance(state, Ready):
            self._log(f"ready: {state.placement_text}")
        elif isinstance(state, Failed):
            self.incidents.append(Incident(time.time(), state.message, list(state.lost_workers)))
            self._log(f"engine failed: {state.message}")
            if self.auto_reload and state.can_reload_without:
                self._log("reloading without " + ", ".join(state.lost_workers))
                # not from inside the supervisor's own callback thread's call stack
                threading.Thread(target=self.supervisor.reload_without_lost, daemon=True).start()

    def health(self) -> tuple[int, dict]:
        s = self.supervisor.state
        body: dict = {"state": type(s).__name__.lower()}
        if isinstance(s, Ready):
            body.update(status="ok", model=s.model, placement=s.placement_text)
        elif isinstance(s, Loading):
            body.update(status="loading", stage=s.stage, progress=round(s.fraction, 3))
        elif isinstance(s, Failed):
            body.update(status="error", message=s.message, lost_workers=s.lost_workers)
        else:
            body.update(status="stopped")
        if self.incidents:
            last = self.incidents[-1]
            body["last_incident"] = {
                "time": last.time,
                "message": last.message,
                "lost_workers": last.lost_workers,
            }
        return (200 if isinstance(s, Ready) else 503), body


def _unavailable(head: HeadlessHead) -> JSONResponse:
    _, body = head.health()
    message = body.get("message") or f"The model is {body['status']}; try again shortly."
    return api_error(503, message, "engine_unavailable")


def create_front(head: HeadlessHead, api_key: str) -> FastAPI:
    app = FastAPI(title="LayerLab", docs_url=None, redoc_url=None, openapi_url=None)

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
        # loopback to our own engine: no TLS store to load, no proxy from the environment
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=None), verify=False, trust_env=False
        )
        try:
            upstream = await client.send(
                client.build_request(request.method, url, content=body, headers=headers),
                stream=True,
            )
        except httpx.HTTPError:
            await client.aclose()
            return _unavailable(head)
        ctype = upstream.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            data = await upstream.aread()
            await upstream.aclose()
            await client.aclose()
            return Response(data, status_code=upstream.status_code, media_type=ctype or None)
        return StreamingResponse(
            _relay(upstream, client, head, len(head.incidents)), media_type="text/event-stream"
        )

    return app


async def _relay(
    upstream: httpx.Response, client: httpx.AsyncClient, head: HeadlessHead, incidents_before: int
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
